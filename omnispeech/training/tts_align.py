"""Word times of TTS training utterances, and the first frame of each text token from them.

The single stream (:func:`~omnispeech.interleave.build_single_stream`) can follow an alignment:
for each text token, the first codec frame that realises it. This module makes one in two
steps, so that the slow part does not depend on the text front end:

1. **Word times** (cached in the run folder, :func:`build_word_times`): the transcript's words
   (:func:`word_spans`: character spans, punctuation trimmed, each character of an unspaced
   script a word of its own) and, for each, its frames ``[start, end)``. From espeak-ng
   (``"espeak"``): the word events it reports while speaking the transcript, scaled linearly
   from its audio length to the utterance's frame count. From an ASR model's CTC head
   (``"asr"``): a forced alignment of the transcript to the utterance's own audio, in seconds
   times the codec's frame rate.
2. **Tokens to words** (per front end): each text token belongs to one transcript word, or to
   none (a separator: space, punctuation). BPE tokens by their character offsets
   (:func:`bpe_token_words`); IPA symbols by the IPA words they are in, each transcript word
   owning the IPA words espeak-ng makes of it (:func:`phoneme_token_words`: "42" gives two).

:func:`token_frames` then spreads a word's tokens evenly over its frames; a separator takes the
end of the word before it. The result is non-decreasing in ``[0, N)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from omnispeech.errors import AudioError, ConfigError, InputError
from omnispeech.pipelines import espeak
from omnispeech.pipelines.asr_align import is_unspaced
from omnispeech.pipelines.tts_frontend import PhonemeFrontend
from omnispeech.training.tts_data import CachedUtterance

SEPARATOR = -1  # token_words entry of a token that belongs to no word
# The clause-end marks the phoneme front end writes after a clause's IPA: separators.
_IPA_MARKS = frozenset(",.;:!?\u2026")


@dataclasses.dataclass(frozen=True)
class WordTime:
    """A transcript word ``text[first:last]`` (characters) spoken over frames ``[start, end)``
    (codec frames of the utterance, ``0 <= start <= end <= N``)."""

    first: int
    last: int
    start: int
    end: int


def _in_word(char: str) -> bool:
    # Letters, digits and combining marks (Indic vowel signs) belong to words; a word's
    # leading and trailing punctuation does not.
    return unicodedata.category(char)[0] in "LNM"


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(first, last)`` of the words of ``text``, in order.

    Words are whitespace-separated with leading and trailing punctuation trimmed (``"e.g."``
    is ``e.g``, ``"1999,"`` is ``1999``); each character of a script written without spaces
    (Han, kana, Thai, ...) is a word of its own, as for ASR timestamps. Pure punctuation is
    no word.
    """
    spans = []
    start = None
    for i, c in enumerate(text + " "):
        if c.isspace() or is_unspaced(c):
            if start is not None:
                spans.append((start, i))
                start = None
            if is_unspaced(c):
                spans.append((i, i + 1))
        elif start is None:
            start = i
    out = []
    for a, b in spans:
        while a < b and not _in_word(text[a]):
            a += 1
        while b > a and not _in_word(text[b - 1]):
            b -= 1
        if a < b:
            out.append((a, b))
    return out


def place_words(
    spans: Sequence[tuple[int, int]],
    timed: Sequence[tuple[int, int, float, float | None]],
    duration: float,
    n_frames: int,
) -> list[WordTime]:
    """Frames of each word from timed pieces of the same text.

    Args:
        spans: the words, from :func:`word_spans`.
        timed: ``(first, last, start, end)`` pieces: characters ``[first, last)`` spoken from
            ``start`` seconds to ``end`` (None: until the next piece starts).
        duration: seconds of the timed audio; it spans the utterance's frames.
        n_frames: ``N``, the utterance's codec frames.

    A word starts with the first piece that overlaps it and ends with the last one's end (or
    the next word's start); a word no piece covers takes no time, after the word before it.
    Times scale by ``N / duration``; starts are in ``[0, N)``, ends in ``[start, N]``.
    """
    scale = n_frames / duration if duration > 0 else 0.0
    starts: list[float | None] = []
    ends: list[float | None] = []
    for a, b in spans:
        hits = [t for t in timed if t[0] < b and a < t[1]]
        starts.append(min(t[2] for t in hits) if hits else None)
        known = [t[3] for t in hits if t[3] is not None]
        ends.append(max(known) if known else None)
    words = []
    start = end = 0.0
    for w, (a, b) in enumerate(spans):
        if starts[w] is None:
            start = end = max(start, end)  # not spoken: no time, after the word before
        else:
            start = max(start, starts[w])
            # Without an end (espeak-ng reports starts only): until the next spoken word.
            later = [s for s in starts[w + 1 :] if s is not None]
            end = ends[w] if ends[w] is not None else later[0] if later else duration
            end = max(start, end)
        # Rounded alike, so that a word ending where the next one starts shares its frame.
        first = min(max(round(start * scale), 0), n_frames - 1)
        last = min(max(round(end * scale), first), n_frames)
        words.append(WordTime(a, b, first, last))
    return words


def espeak_word_times(speaker, text: str, voice: str, n_frames: int) -> list[WordTime]:
    """Word frames from espeak-ng speaking ``text`` in ``voice``, scaled to ``n_frames``.

    Args:
        speaker: an :class:`~omnispeech.pipelines.espeak_speech.EspeakLibrary`.
    """
    wav, spoken = speaker.speak(text, voice)
    timed = [(w.offset, w.offset + len(w.text), w.start, None) for w in spoken if w.offset >= 0]
    return place_words(word_spans(text), timed, len(wav) / speaker.sample_rate, n_frames)


def asr_word_times(asr, path: str, text: str, n_frames: int, frame_rate: float) -> list[WordTime]:
    """Word frames from a CTC forced alignment of ``text`` to the audio at ``path``.

    Args:
        asr: an :class:`~omnispeech.pipelines.asr.ASR` with a CTC head.
        frame_rate: codec frames per second (12.5 for 80 ms frames).

    Raises:
        AlignmentError: the transcript is too long for the audio.
    """
    alignment = asr.align(path, text, check=False)
    timed = []
    cursor = 0
    for w in alignment.words:
        # The aligner's words are the transcript's whitespace-separated pieces, in order.
        at = text.find(w.text, cursor)
        if at < 0:
            continue
        timed.append((at, at + len(w.text), w.start, w.end))
        cursor = at + len(w.text)
    return place_words(word_spans(text), timed, n_frames / frame_rate, n_frames)


def token_frames(token_words: Sequence[int], words: Sequence[WordTime], n_frames: int) -> list[int]:
    """The first frame of each text token: ``a`` for :func:`build_single_stream`.

    Args:
        token_words: per token, the index of its word in ``words`` or :data:`SEPARATOR`.
        words: the utterance's word times.
        n_frames: ``N``.

    Returns:
        One frame per token, non-decreasing, in ``[0, N)``: the tokens of a word spread
        evenly over its frames (the first at the word's start), a separator at the end of the
        word before it (frame 0 before the first word).
    """
    sizes: dict[int, int] = {}
    for w in token_words:
        sizes[w] = sizes.get(w, 0) + 1
    seen: dict[int, int] = {}
    out = []
    previous_word, floor = -1, 0
    for w in token_words:
        if w == SEPARATOR:
            frame = words[previous_word].end if previous_word >= 0 else 0
        else:
            j = seen.get(w, 0)
            seen[w] = j + 1
            word = words[w]
            frame = word.start + (j * (word.end - word.start)) // sizes[w]
            previous_word = w
        # Clamp: never before an earlier token, never past the last frame.
        floor = min(max(frame, floor), n_frames - 1)
        out.append(floor)
    return out


def bpe_token_words(
    tokenizer: Tokenizer, text: str, spans: Sequence[tuple[int, int]]
) -> tuple[list[int], list[int]]:
    """The BPE ids of ``text`` (as the batcher encodes it) and each token's word index in
    ``spans`` (the first word its character offsets overlap) or :data:`SEPARATOR`."""
    encoding = tokenizer.encode(text, add_special_tokens=False)
    words = []
    w = 0
    for a, b in encoding.offsets:
        while w < len(spans) and spans[w][1] <= a:
            w += 1
        hit = w < len(spans) and spans[w][0] < b and a < spans[w][1]
        words.append(w if hit else SEPARATOR)
    return list(encoding.ids), words


def phoneme_token_words(
    frontend: PhonemeFrontend, text: str, language: str, spans: Sequence[tuple[int, int]]
) -> tuple[list[int], list[int]]:
    """The phoneme ids of ``text`` (``frontend.encode(text, language)``) and each token's
    word index in ``spans`` or :data:`SEPARATOR` (spaces, clause marks).

    Each transcript word owns the IPA words espeak-ng writes for it. Within a clause (the
    front end phonemizes clause by clause) the IPA of the text up to the end of word ``j``
    has ``c_j`` words, so word ``j`` owns IPA words ``[c_{j-1}, c_j)``; counts are made
    non-decreasing and the clause's last word takes the rest (espeak-ng may merge words).

    Raises:
        LanguageError: espeak-ng has no voice for ``language``.
    """
    voice = frontend.espeak_voice(language)
    owner: list[int] = []  # IPA word -> transcript word
    at = 0
    for clause in espeak.split_clauses(text):
        begin, at = at, at + len(clause)
        total = len(espeak.phonemize(clause, voice).split())
        inside = [w for w, (a, _) in enumerate(spans) if begin <= a < at]
        done = 0
        for n, w in enumerate(inside):
            last = spans[w][1]
            count = (
                total
                if n == len(inside) - 1
                else len(espeak.phonemize(text[begin:last], voice).split())
            )
            count = min(max(count, done), total)
            owner.extend([w] * (count - done))
            done = count
        owner.extend([SEPARATOR] * (total - done))  # a clause of punctuation only
    ids, words = [], []
    ipa_word = 0
    tokenizer = frontend.tokenizer
    for c in unicodedata.normalize("NFD", espeak.phonemize(text, voice)):
        if c == " ":
            ipa_word += 1
        i = tokenizer.token_to_id(c)
        if i is None:
            continue  # dropped by the inventory, as in PhonemeTokenizer.encode
        ids.append(i)
        inside_word = c != " " and c not in _IPA_MARKS and ipa_word < len(owner)
        words.append(owner[ipa_word] if inside_word else SEPARATOR)
    return ids, words


# -- the cache of word times -------------------------------------------------------------------
@dataclasses.dataclass
class WordTimes:
    """Word times of every utterance of a cache (None: aligned evenly), and how many fell
    back to even spreading (the aligner failed or espeak-ng has no voice for the language)."""

    words: list[list[WordTime] | None]
    fallback: int


def _fingerprint(utterances: Sequence[CachedUtterance], method: str, source: str) -> str:
    digest = hashlib.sha256(f"{method}\t{source}\n".encode())
    for u in utterances:
        digest.update(f"{u.path}\t{u.text}\t{u.language}\t{u.frames}\n".encode())
    return digest.hexdigest()


def build_word_times(  # noqa: PLR0913 - where the cache goes and what fills it
    name: str,
    utterances: Sequence[CachedUtterance],
    method: str,
    folder: Path,
    aligner: str = "",
    frame_rate: float = 12.5,
    progress: bool = True,
) -> WordTimes:
    """Word times of ``utterances`` by ``method`` (``espeak`` or ``asr``), computed once and
    kept in ``folder/{name}.words.json``; a cache with a matching fingerprint is reused.

    Args:
        name: the cache's file stem (``train``, ``valid``).
        utterances: the code cache's utterances (texts, languages, frame counts, paths).
        method: ``espeak`` or ``asr``.
        folder: where the file goes (``OUT/cache``).
        aligner: with ``asr``, the ASR folder (it needs a CTC head).
        frame_rate: codec frames per second (ASR times are in seconds).
        progress: a progress bar while aligning.

    Raises:
        ConfigError: the aligner has no CTC head; the cache predates recorded audio paths.
        DependencyError: ``espeak`` without an espeak-ng library.
    """
    file = folder / f"{name}.words.json"
    source = espeak.library().path if method == "espeak" else _model_source(aligner)
    fingerprint = _fingerprint(utterances, method, f"{source}\t{frame_rate}")
    if file.is_file():
        stored = json.loads(file.read_text())
        if stored.get("fingerprint") == fingerprint:
            return _from_json(stored)
    align = _aligner(method, aligner, frame_rate)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(utterances), desc=f"aligning {name} set ({method})", unit="utt")
    rows: list[list[list[int]] | None] = [None] * len(utterances)
    fallback = 0
    # One language after the other: espeak-ng 1.51 can lose the first word event of a
    # synthesis after a voice change, so voices change as rarely as possible.
    for i in sorted(range(len(utterances)), key=lambda i: utterances[i].language):
        try:
            words = align(utterances[i])
            rows[i] = [[w.first, w.last, w.start, w.end] for w in words]
        except (InputError, AudioError):
            # AlignmentError (an InputError: text too long for the audio), silent audio, or a
            # language without an espeak-ng voice: this utterance keeps even durations.
            fallback += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    stored = {"fingerprint": fingerprint, "words": rows, "fallback": fallback}
    folder.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(stored) + "\n")
    tmp.replace(file)
    return _from_json(stored)


def _model_source(folder: str) -> str:
    path = Path(folder)
    weights = sorted(path.glob("*.safetensors"))
    sizes = ",".join(str(w.stat().st_size) for w in weights)
    config = path / "config.json"
    digest = hashlib.sha256(config.read_bytes() if config.is_file() else b"").hexdigest()
    return f"{path.resolve()}\t{digest}\t{sizes}"


def _aligner(method: str, aligner: str, frame_rate: float):
    """A function utterance -> word times for ``method``."""
    if method == "espeak":
        from omnispeech.pipelines.espeak_speech import EspeakLibrary

        speaker, frontend = EspeakLibrary(), PhonemeFrontend()
        return lambda u: espeak_word_times(
            speaker, u.text, frontend.espeak_voice(u.language), u.frames
        )
    from omnispeech.pipelines.asr import ASR

    asr = ASR.from_pretrained(aligner)
    if asr.ctc_head is None:
        raise ConfigError(
            f"data.aligner {aligner!r} has no CTC head, so it cannot align transcripts; use a "
            "model trained by `omnispeech train asr`"
        )

    def align(u: CachedUtterance) -> list[WordTime]:
        if not u.path:
            raise ConfigError(
                "the code cache predates recorded audio paths: delete OUT/cache and run again"
            )
        return asr_word_times(asr, u.path, u.text, u.frames, frame_rate)

    return align


def _from_json(stored: dict) -> WordTimes:
    words = [None if r is None else [WordTime(*w) for w in r] for r in stored["words"]]
    return WordTimes(words, int(stored["fallback"]))
