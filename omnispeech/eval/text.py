"""Text normalisation and error rates (CER / WER) that mean the same thing in every script.

Both sides of a comparison go through :func:`normalize_text`: Unicode NFKC, casefolding,
punctuation (Unicode categories ``P*``) removed, whitespace collapsed; digits are kept as
they are (no number-to-words expansion, so "3" and "three" differ).

Scripts that do not put spaces between words (Han, Hiragana / Katakana, Thai, Lao, Khmer,
Myanmar, Tibetan) have no words to count, so each of their characters is one token: "WER" on
such text is counted on characters, and CER is the primary metric of their languages
(:func:`primary_metric`). Runs of any other script inside such text stay whole words.

Rates are corpus-level: the edits of all utterances over the length of all references, which
weighs each utterance by its length (the usual convention; a mean of per-utterance rates lets
short utterances dominate).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import astuple
from types import ModuleType
from typing import Literal

from omnispeech.errors import DependencyError, InputError

Metric = Literal["cer", "wer"]

# Languages written without spaces between words, by ISO 639 code (and the names Qwen3-ASR
# reports, lowercased): their primary metric is CER.
UNSPACED_LANGUAGES = frozenset(
    {"zh", "cmn", "yue", "wuu", "nan", "hak", "ja", "th", "lo", "km", "my", "bo", "dz"}
    | {"chinese", "cantonese", "japanese", "thai", "lao", "khmer", "burmese", "tibetan"}
)

# Code point ranges of the unspaced scripts (inclusive): each character is one token.
_UNSPACED_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x19E0, 0x19FF),  # Khmer symbols
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3021, 0x3029),  # Hangzhou numerals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA9E0, 0xA9FF),  # Myanmar extended-B
    (0xAA60, 0xAA7F),  # Myanmar extended-A
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana (NFKC maps them, kept for raw input)
    (0x20000, 0x3134F),  # CJK extensions B-G
)

# Apostrophes join a word ("don't" = "dont"); every other punctuation mark separates words.
_APOSTROPHES = frozenset("'\u2019\u02bc\uff07")


def is_unspaced_char(char: str) -> bool:
    """Whether ``char`` belongs to a script written without spaces between words."""
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _UNSPACED_RANGES)


def primary_metric(language: str | None, text: str = "") -> Metric:
    """The metric that ranks systems in ``language``: ``"cer"`` or ``"wer"``.

    Args:
        language: an ISO 639 code (``zh``, ``ja-JP``, ``th``) or an English name
            (``Chinese``); any case. None or empty: decided from ``text``.
        text: used when ``language`` is not given: CER when most of its letters are in an
            unspaced script.

    Returns:
        ``"cer"`` for languages written without spaces between words, ``"wer"`` otherwise.
    """
    if language:
        key = language.strip().lower().replace("_", "-")
        if key in UNSPACED_LANGUAGES or key.split("-")[0] in UNSPACED_LANGUAGES:
            return "cer"
        return "wer"
    letters = [c for c in text if c.isalpha()]
    unspaced = sum(is_unspaced_char(c) for c in letters)
    return "cer" if letters and 2 * unspaced > len(letters) else "wer"


def normalize_text(text: str) -> str:
    """Normalise text for scoring: NFKC, casefold, punctuation removed, whitespace collapsed.

    Spaces next to a character of an unspaced script are dropped ("你 好" = "你好"): in those
    scripts a space is layout, not a word boundary.

    Args:
        text: any text.

    Returns:
        The normalised text (may be empty).
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    chars = []
    for c in text:
        if c in _APOSTROPHES:
            continue
        category = unicodedata.category(c)
        # Punctuation and separators / controls become a space; digits and symbols are kept.
        chars.append(" " if category[0] == "P" or category[0] in "ZC" else c)
    words = "".join(chars).split()
    out: list[str] = []
    for word in words:
        if out and (is_unspaced_char(out[-1][-1]) or is_unspaced_char(word[0])):
            out[-1] += word
        else:
            out.append(word)
    return " ".join(out)


def tokenize(normalized: str) -> list[str]:
    """Split normalised text into the units that WER counts.

    Whitespace separates words; every character of an unspaced script is a token of its own,
    and runs of other characters between them stay whole ("我有3个apple" -> 我 有 3 个 apple).
    """
    tokens: list[str] = []
    for word in normalized.split():
        run = ""
        for c in word:
            if is_unspaced_char(c):
                if run:
                    tokens.append(run)
                    run = ""
                tokens.append(c)
            else:
                run += c
        if run:
            tokens.append(run)
    return tokens


@dataclasses.dataclass(frozen=True)
class EditCounts:
    """Edit distance of one hypothesis (or a sum over many) against its reference.

    Attributes:
        word_errors: substitutions + deletions + insertions, over tokens (:func:`tokenize`).
        words: reference tokens.
        char_errors: substitutions + deletions + insertions, over characters.
        chars: reference characters (of the normalised text, spaces included).
        word_deletions: reference tokens the hypothesis left out (of ``word_errors``).
        word_insertions: hypothesis tokens with no reference token (of ``word_errors``).
    """

    word_errors: int = 0
    words: int = 0
    char_errors: int = 0
    chars: int = 0
    word_deletions: int = 0
    word_insertions: int = 0

    def __add__(self, other: EditCounts) -> EditCounts:
        return EditCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @property
    def deletion_rate(self) -> float:
        """Deleted reference tokens per reference token (in TTS: skipped words); NaN for none."""
        return self.word_deletions / self.words if self.words else float("nan")

    @property
    def insertion_rate(self) -> float:
        """Inserted tokens per reference token (in TTS: repeated or babbled words)."""
        return self.word_insertions / self.words if self.words else float("nan")

    @property
    def wer(self) -> float:
        """Word error rate (0 = perfect; can exceed 1 with insertions); NaN for no words."""
        return self.word_errors / self.words if self.words else float("nan")

    @property
    def cer(self) -> float:
        """Character error rate; NaN for no characters."""
        return self.char_errors / self.chars if self.chars else float("nan")

    @staticmethod
    def total(counts: Iterable[EditCounts]) -> EditCounts:
        """The sum of ``counts`` (corpus-level counts)."""
        out = EditCounts()
        for c in counts:
            out = out + c
        return out


def _jiwer() -> ModuleType:
    try:
        import jiwer
    except ImportError:
        raise DependencyError("error rates need jiwer: pip install 'omnispeech[eval]'") from None
    return jiwer


def _edits(reference: list[str], hypothesis: list[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of two token lists (jiwer's alignment)."""
    if not reference:
        return 0, 0, len(hypothesis)  # every hypothesis token is an insertion
    if not hypothesis:
        return 0, len(reference), 0
    jiwer = _jiwer()
    # jiwer splits on spaces; tokens never hold spaces, so joining keeps them intact.
    out = jiwer.process_words(" ".join(reference), " ".join(hypothesis))
    return out.substitutions, out.deletions, out.insertions


def edit_counts(reference: str, hypothesis: str) -> EditCounts:
    """Normalise both texts and count their token and character edits.

    Args:
        reference: the true transcript.
        hypothesis: the recognised one.
    """
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    ref_tokens, hyp_tokens = tokenize(ref), tokenize(hyp)
    # Characters as tokens; a space becomes a visible token so it is counted like jiwer's CER.
    ref_chars = ["\u2581" if c == " " else c for c in ref]
    hyp_chars = ["\u2581" if c == " " else c for c in hyp]
    word = _edits(ref_tokens, hyp_tokens)
    return EditCounts(
        word_errors=sum(word),
        words=len(ref_tokens),
        char_errors=sum(_edits(ref_chars, hyp_chars)),
        chars=len(ref_chars),
        word_deletions=word[1],
        word_insertions=word[2],
    )


@dataclasses.dataclass(frozen=True)
class ErrorRates:
    """Corpus-level error rates of a set of hypotheses.

    Attributes:
        cer: character error rate (0 = perfect).
        wer: word error rate (on characters for unspaced scripts).
        metric: the primary metric of the language (``"cer"`` or ``"wer"``).
        counts: the summed edit counts.
    """

    cer: float
    wer: float
    metric: Metric
    counts: EditCounts

    @property
    def primary(self) -> float:
        """The value of the primary metric."""
        return self.cer if self.metric == "cer" else self.wer


def error_rates(
    references: Sequence[str], hypotheses: Sequence[str], language: str | None = None
) -> ErrorRates:
    """Corpus-level CER and WER of ``hypotheses`` against ``references``.

    Args:
        references: true transcripts.
        hypotheses: recognised transcripts, one per reference.
        language: decides the primary metric (see :func:`primary_metric`; None: from the
            references' script).

    Raises:
        InputError: lists of different lengths, or references with no text at all.
        DependencyError: jiwer is not installed.
    """
    if isinstance(references, str) or isinstance(hypotheses, str):
        references, hypotheses = [references], [hypotheses]  # type: ignore[list-item]
    if len(references) != len(hypotheses):
        raise InputError(
            f"{len(references)} references but {len(hypotheses)} hypotheses; they must pair up"
        )
    pairs = zip(references, hypotheses, strict=True)
    counts = EditCounts.total(edit_counts(r, h) for r, h in pairs)
    if counts.chars == 0:
        raise InputError("the references hold no text after normalisation; nothing to score")
    metric = primary_metric(language, " ".join(references))
    return ErrorRates(counts.cer, counts.wer, metric, counts)
