"""Text front ends of the TTS pipeline: what turns text into the talker's text-track ids.

A model folder declares its front end; :func:`load_frontend` reads the declaration:

* No declaration (every released Qwen3-TTS folder): :class:`BpeFrontend`, the Qwen byte-level
  BPE tokenizer of the folder's ``tokenizer.json`` (or ``vocab.json`` + ``merges.txt``).
* ``text_frontend.json`` with ``"kind": "espeak-ipa"``: :class:`PhonemeFrontend`. Text is read
  by espeak-ng (numbers, dates and abbreviations expanded) into IPA, one id per symbol. Small
  models learn pronunciation far faster from phonemes than from BPE pieces. The file holds::

      {
        "kind": "espeak-ipa",
        "default_language": "en",          # ISO 639 code used for language="auto"
        "voices": {"en": "en-us"},         # language code -> espeak-ng voice, optional
        "symbols": ["<|tts_pad|>", ...]    # the inventory: id i is symbols[i]
      }

  The talker's ``tts_pad`` / ``tts_text_bos`` / ``tts_text_eod`` / ``im_start`` / ``im_end``
  ids must be those of the same-named specials of ``symbols``; the role header is
  ``<|im_start|><|assistant|>``.

The language of a phoneme front end is the ``language`` of the TTS call (a code such as
``de``, an English name such as ``German``, or ``auto``); it picks the espeak-ng voice.
"""

from __future__ import annotations

import abc
import collections
import json
import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from omnispeech.errors import CheckpointError, InputError, LanguageError
from omnispeech.pipelines import espeak
from omnispeech.pipelines.languages import LANGUAGE_NAMES, language_code
from omnispeech.pipelines.scripts import check_script
from omnispeech.pipelines.tokenizer import load_tokenizer
from omnispeech.pipelines.tts_text import TextFeed
from omnispeech.talker import TalkerTokens

FRONTEND_FILE = "text_frontend.json"
ESPEAK_IPA = "espeak-ipa"

# Special ids first, named as in the Qwen vocabulary where the prompt has the same role.
SPECIAL_TOKENS = (
    "<|tts_pad|>", "<|tts_text_bos|>", "<|tts_text_eod|>", "<|im_start|>", "<|im_end|>",
    "<|assistant|>",
)  # fmt: skip
# Talker config fields (TalkerTokens) and the special each must equal.
_TALKER_SPECIALS = {
    "tts_pad": "<|tts_pad|>", "tts_bos": "<|tts_text_bos|>", "tts_eos": "<|tts_text_eod|>",
    "im_start": "<|im_start|>", "im_end": "<|im_end|>",
}  # fmt: skip
# espeak-ng's "en" is British English and Mandarin's voice is "cmn", not "zh".
DEFAULT_VOICES = {"en": "en-us", "zh": "cmn"}


def _default_symbols() -> tuple[str, ...]:
    """The inventory new phoneme models start from: one symbol per code point of espeak-ng's
    IPA in NFD (a base letter and each diacritic apart), so every language's phonemes are
    spelled with a few hundred symbols."""
    spans = [
        " ",  # word boundary
        ",.;:!?\u2026-",  # clause ends kept for prosody; "-" joins clitics (French "lə-")
        "\u02c8\u02cc\u02d0\u02d1\u203f",  # primary / secondary stress, long, half-long, link
        "abcdefghijklmnopqrstuvwxyz",
        "".join(map(chr, range(0x0250, 0x02B0))),  # IPA Extensions: ɐ ɑ ə ɚ ɪ ʃ ʊ ʒ ʔ ...
        # æ ð ø ħ ŋ œ, Greek β ε θ χ, ᵻ ᵿ (English reduced vowels), click letters.
        "\u00e6\u00f0\u00f8\u0127\u014b\u0153\u03b2\u03b5\u03b8\u03c7\u1d7b\u1d7f",
        "\u01c0\u01c1\u01c2\u01c3",
        # Modifier letters: aspirated, palatalised, labialised, velarised, pharyngealised,
        # rhotic hook, ejective, nasal / lateral release, schwa, breathy, Japanese compressed u.
        "\u02b0\u02b1\u02b2\u02b7\u02e0\u02e4\u02de\u02bc\u207f\u02e1\u1d4a\u1d5d",
        "\u02e5\u02e6\u02e7\u02e8\u02e9\u2193\u2191",  # tone letters, downstep, upstep
        "0123456789",  # tone numbers of some voices
        "".join(map(chr, range(0x0300, 0x0370))),  # combining diacritics, tie bars included
    ]
    out = list(SPECIAL_TOKENS)
    for span in spans:
        out.extend(c for c in span if c not in out)
    return tuple(out)


DEFAULT_SYMBOLS = _default_symbols()


class UnknownSymbolWarning(UserWarning):
    """Phonemes outside a model's symbol inventory were dropped."""


class PhonemeTokenizer:
    """A fixed symbol inventory: IPA text <-> ids, one symbol per Unicode code point (NFD).

    Symbols outside the inventory are dropped and counted in :attr:`unknown`, with one
    :class:`UnknownSymbolWarning` per new symbol: a voice may write a phoneme the model never
    saw, and the rest of the text is still worth speaking.

    Args:
        symbols: id ``i`` is ``symbols[i]``; specials (``<|...|>``) are never produced from
            text.
    """

    def __init__(self, symbols: Sequence[str] = DEFAULT_SYMBOLS) -> None:
        if len(set(symbols)) != len(symbols):
            raise CheckpointError("the phoneme inventory lists a symbol twice")
        for s in symbols:
            if not s or (len(s) > 1 and not (s.startswith("<|") and s.endswith("|>"))):
                raise CheckpointError(
                    f"phoneme symbol {s!r}: a symbol is one character or a <|special|>"
                )
        self.symbols = tuple(symbols)
        self._ids = {s: i for i, s in enumerate(self.symbols)}
        self.unknown: collections.Counter[str] = collections.Counter()

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def token_to_id(self, symbol: str) -> int | None:
        """The id of a symbol or special, None when the inventory lacks it."""
        return self._ids.get(symbol)

    def encode(self, ipa: str) -> list[int]:
        """IPA text -> ids, one per code point after NFD; unknown symbols dropped."""
        ids = []
        for c in unicodedata.normalize("NFD", ipa):
            i = self._ids.get(c)
            if i is None:
                if c not in self.unknown:
                    warnings.warn(
                        f"phoneme {c!r} (U+{ord(c):04X}) is not in this model's inventory; dropped",
                        UnknownSymbolWarning,
                        stacklevel=2,
                    )
                self.unknown[c] += 1
            else:
                ids.append(i)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> IPA text (specials left out).

        Raises:
            InputError: an id outside the inventory.
        """
        out = []
        for i in ids:
            if not 0 <= i < len(self.symbols):
                raise InputError(f"phoneme id {i} outside the inventory [0, {len(self.symbols)})")
            if len(self.symbols[i]) == 1:
                out.append(self.symbols[i])
        return "".join(out)


class TextFrontend(abc.ABC):
    """What the TTS pipeline needs from text: ids of the text track, incrementally."""

    kind: str
    # Seconds of speech the duration guard allows per token; None: the pipeline's default for
    # BPE pieces (tts_loop.GUARD_SECONDS_PER_TOKEN). Shorter tokens need a tighter allowance,
    # or a runaway utterance of a long text runs for minutes before it is cut.
    guard_seconds_per_token: float | None = None

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of text ids (the talker's text embedding must have at least as many)."""

    @property
    @abc.abstractmethod
    def role_ids(self) -> list[int]:
        """Ids of the role header that opens the talker's prompt."""

    @abc.abstractmethod
    def encode(self, text: str, language: str = "auto") -> list[int]:
        """Ids of ``text`` (a whole text, e.g. a reference clip's transcript)."""

    @abc.abstractmethod
    def feed(self, max_tokens: int, language: str = "auto") -> TextFeed:
        """A :class:`TextFeed` for text in pieces, in segments of at most ``max_tokens``."""

    @abc.abstractmethod
    def instruct_ids(self, instruction: str) -> list[int]:
        """Ids of an instruction turn (models trained to follow one)."""

    @abc.abstractmethod
    def check_text(self, text: str, language: str = "auto") -> None:
        """Raise :class:`LanguageError` for a whole text this front end cannot read in
        ``language``, so that it fails before any of it is spoken."""

    @abc.abstractmethod
    def check(self, tokens: TalkerTokens) -> None:
        """Raise :class:`CheckpointError` when the talker's text ids do not fit this front end."""

    @abc.abstractmethod
    def save(self, folder: Path) -> None:
        """Write this front end's files into a model folder."""


class BpeFrontend(TextFrontend):
    """The Qwen byte-level BPE tokenizer, as the released checkpoints read text. Byte-level
    BPE reads every language as it is written, so ``language`` changes nothing here."""

    kind = "bpe"

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def role_ids(self) -> list[int]:
        return self.tokenizer.encode("<|im_start|>assistant\n").ids

    def encode(self, text: str, language: str = "auto") -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def feed(self, max_tokens: int, language: str = "auto") -> TextFeed:
        return TextFeed(self.encode, max_tokens)

    def instruct_ids(self, instruction: str) -> list[int]:
        return self.tokenizer.encode(f"<|im_start|>user\n{instruction}<|im_end|>\n").ids

    def check_text(self, text: str, language: str = "auto") -> None:
        pass  # bytes of any script are read as they are written

    def check(self, tokens: TalkerTokens) -> None:
        pass  # the released configs name their own ids; nothing to cross-check

    def save(self, folder: Path) -> None:
        self.tokenizer.save(str(Path(folder) / "tokenizer.json"))


class PhonemeFrontend(TextFrontend):
    """espeak-ng IPA phonemes, one id per symbol of a fixed inventory.

    Text in pieces is converted a clause at a time, once the clause is complete
    (:func:`omnispeech.pipelines.espeak.clause_ends`), so an LLM's streamed text gives the
    same ids as the whole text; speech starts after the first clause.

    Args:
        tokenizer: the symbol inventory.
        default_language: ISO 639 code read for ``language="auto"``.
        voices: language code -> espeak-ng voice, over :data:`DEFAULT_VOICES`.
    """

    kind = ESPEAK_IPA
    # IPA symbols (stress and length marks, spaces included) come at about 12-16 a second of
    # speech; 0.2 s each is about three times a normal pace, as the BPE default is.
    guard_seconds_per_token = 0.2

    def __init__(
        self,
        tokenizer: PhonemeTokenizer | None = None,
        default_language: str = "en",
        voices: dict[str, str] | None = None,
    ) -> None:
        self.tokenizer = tokenizer or PhonemeTokenizer()
        missing = [s for s in SPECIAL_TOKENS if self.tokenizer.token_to_id(s) is None]
        if missing:
            raise CheckpointError(f"the phoneme inventory lacks the specials {missing}")
        self.default_language = default_language
        self.voices = dict(voices or {})

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def role_ids(self) -> list[int]:
        return [self._special("<|im_start|>"), self._special("<|assistant|>")]

    def _special(self, name: str) -> int:
        i = self.tokenizer.token_to_id(name)
        assert i is not None  # checked in __init__
        return i

    def language_code(self, language: str = "auto") -> str:
        """The ISO 639 code ``language`` (code, English name or ``auto``) stands for; a name
        this module does not know is returned lower-cased, for espeak-ng to try."""
        wanted = language.strip()
        if wanted.lower() == "auto":
            wanted = self.default_language
        code = wanted.lower() if wanted.lower() in LANGUAGE_NAMES else language_code(wanted)
        return code or wanted.lower()

    def espeak_voice(self, language: str = "auto") -> str:
        """The espeak-ng voice that reads ``language`` (code, English name or ``auto``).

        Raises:
            LanguageError: espeak-ng has no voice for it.
            DependencyError: espeak-ng is not installed.
        """
        code = self.language_code(language)
        voice = self.voices.get(code) or DEFAULT_VOICES.get(code) or code
        if not espeak.has_voice(voice):
            raise LanguageError(
                f"espeak-ng has no voice for language {language!r} (tried {voice!r}); give an "
                "ISO 639 code or English name that espeak-ng speaks (espeak-ng --voices)"
            )
        return voice

    def phonemes(self, text: str, language: str = "auto") -> str:
        """IPA of ``text`` as this front end reads it (see :func:`espeak.phonemize`).

        Raises:
            LanguageError: no espeak-ng voice for ``language``, or letters of a writing
                system it is not read from (:func:`scripts.check_script`).
        """
        voice = self.espeak_voice(language)
        check_script(text, self.language_code(language))
        return espeak.phonemize(text, voice)

    def encode(self, text: str, language: str = "auto") -> list[int]:
        return self.tokenizer.encode(self.phonemes(text, language))

    def check_text(self, text: str, language: str = "auto") -> None:
        self.espeak_voice(language)
        check_script(text, self.language_code(language))

    def feed(self, max_tokens: int, language: str = "auto") -> TextFeed:
        voice = self.espeak_voice(language)  # an unknown language fails here, before any speech
        code = self.language_code(language)

        def tokenize(text: str) -> list[int]:
            # Checked a segment at a time: streamed text in another script fails at the
            # clause that has it, never spoken as espeak-ng's letter names.
            check_script(text, code)
            return self.tokenizer.encode(espeak.phonemize(text, voice))

        return TextFeed(tokenize, max_tokens, cuts=espeak.clause_ends)

    def instruct_ids(self, instruction: str) -> list[int]:
        raise InputError("this model reads phonemes and was not trained with instructions")

    def check(self, tokens: TalkerTokens) -> None:
        wrong = [
            f"{field}={getattr(tokens, field)} (the inventory's {name} is {self._special(name)})"
            for field, name in _TALKER_SPECIALS.items()
            if getattr(tokens, field) != self._special(name)
        ]
        if wrong:
            raise CheckpointError(
                "the talker's text ids do not match the phoneme inventory: " + ", ".join(wrong)
            )

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "default_language": self.default_language,
            "voices": self.voices,
            "symbols": list(self.tokenizer.symbols),
        }

    @classmethod
    def from_dict(cls, data: dict) -> PhonemeFrontend:
        """Read a declaration (the dict of ``text_frontend.json``).

        Raises:
            CheckpointError: unknown or missing fields.
        """
        unknown = set(data) - {"kind", "default_language", "voices", "symbols"}
        if unknown:
            raise CheckpointError(f"{FRONTEND_FILE}: unknown fields {sorted(unknown)}")
        if not isinstance(data.get("symbols"), list):
            raise CheckpointError(f"{FRONTEND_FILE}: 'symbols' (the inventory) must be a list")
        voices = data.get("voices", {})
        if not isinstance(voices, dict):
            raise CheckpointError(f"{FRONTEND_FILE}: 'voices' must map language codes to voices")
        return cls(
            PhonemeTokenizer(data["symbols"]),
            str(data.get("default_language", "en")),
            {str(k): str(v) for k, v in voices.items()},
        )

    def save(self, folder: Path) -> None:
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1)
        (Path(folder) / FRONTEND_FILE).write_text(text + "\n", encoding="utf-8")


def load_frontend(folder: str | Path) -> TextFrontend:
    """The text front end a model folder declares (:data:`FRONTEND_FILE`), else its BPE.

    Raises:
        CheckpointError: an unreadable declaration or an unknown ``kind``.
        TokenizerError: no declaration and no tokenizer files.
    """
    path = Path(folder) / FRONTEND_FILE
    if not path.is_file():
        return BpeFrontend(load_tokenizer(folder))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind != ESPEAK_IPA:
        raise CheckpointError(f"{path}: unknown text front end kind {kind!r} (known: {ESPEAK_IPA})")
    return PhonemeFrontend.from_dict(data)
