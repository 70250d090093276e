"""espeak-ng as a library: the one process-wide handle, and text -> IPA phonemes.

libespeak-ng is a global C library: one voice is selected at a time and synthesis reports
through one callback. Every caller in this process therefore shares one loaded, initialised
handle (:func:`library`) and holds :data:`LOCK` while it selects a voice and uses it. The
library comes from the ``espeakng-loader`` wheel (its own library and data, a dependency of
the package) when installed, else from Debian's ``libespeak-ng1``.

:func:`phonemize` reads text as espeak-ng reads it aloud (numbers, dates and abbreviations
expanded in the language's own words) and writes IPA: words separated by spaces, stress
marks ``ˈ ˌ`` and length ``ː`` inside words. espeak-ng drops punctuation from its phoneme
output; the clause ends that shape prosody (``, . ; : ! ? …``) are put back as symbols.

Clauses are cut here, by :func:`clause_ends`, and each is phonemized on its own. So the IPA of
a text is the IPA of its clauses joined by spaces, whatever follows the last clause: a text that
arrives in pieces can be converted clause by clause as soon as each is complete, and gives the
same phonemes as the whole text.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import re
import threading
import unicodedata

from omnispeech.errors import DependencyError, InputError

LOCK = threading.Lock()  # hold while selecting a voice and using it (global C state)

_SYNCHRONOUS = 2  # espeak_Initialize output mode: audio through the callback, no device
_TEXT_UTF8 = 1  # espeak_TextToPhonemes textmode: the text is UTF-8
_PHONEMES_IPA = 0x02  # espeak_TextToPhonemes phonememode bit 1: IPA as UTF-8, not mnemonics

# Clause-ending punctuation: ASCII and the fullwidth / CJK forms, each written as the ASCII
# symbol the phoneme inventory holds. Closing quotes and brackets may follow a clause end.
_CLAUSE_PUNCTUATION = {
    ",": ",", ".": ".", ";": ";", ":": ":", "!": "!", "?": "?", "\u2026": "\u2026",
    "\u3001": ",", "\u3002": ".", "\uff0c": ",", "\uff0e": ".", "\uff1b": ";", "\uff1a": ":",
    "\uff01": "!", "\uff1f": "?",
}  # fmt: skip
_CJK_PUNCTUATION = "\u3001\u3002\uff0c\uff0e\uff1b\uff1a\uff01\uff1f"
_CLOSERS = "\"')]}\u00bb\u2019\u201d\u300d\u300f\uff09"
_PUNCT = re.escape("".join(_CLAUSE_PUNCTUATION))
_CLOSE = re.escape(_CLOSERS)
# A run of clause punctuation (and closers), then either whitespace and the next visible
# character, or (CJK text has no spaces) directly a character that is neither. Both branches
# need the character after the clause end: a clause is known complete only once it is seen,
# and since that character can be neither punctuation nor a closer, the regex cannot stop
# inside a run that more text would have extended.
_CLAUSE_END = re.compile(
    rf"[{_PUNCT}]+[{_CLOSE}]*(?=(\s+)(\S))"
    rf"|[{_CJK_PUNCTUATION}]+[{_CLOSE}]*(?=[^\s{_PUNCT}{_CLOSE}])"
)
_TRAILING = re.compile(rf"([{_PUNCT}]+)[{_CLOSE}]*\s*$")
# espeak-ng marks words it reads in another language's voice: "(en)nɪ(cmn)".
_LANGUAGE_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)*\)")


@dataclasses.dataclass
class Library:
    """The loaded, initialised libespeak-ng.

    Attributes:
        lib: the ctypes handle.
        path: where the shared library was found.
        sample_rate: of its speech, in Hz (22050).
        current_voice: the voice :meth:`set_voice` selected last.
    """

    lib: ctypes.CDLL
    path: str
    sample_rate: int
    current_voice: str | None = None  # as last selected by set_voice

    def set_voice(self, voice: str) -> bool:
        """Select ``voice`` as the espeak-ng program does: by voice file name first, then by
        language (``fr-fr`` names no voice file but is the French voice's language; a
        ``+variant`` suffix is honoured either way). Call with :data:`LOCK` held.

        Returns:
            False when espeak-ng has no such voice or language.
        """
        if not voice:
            return False  # an empty language matches espeak-ng's default voice
        if voice == self.current_voice:
            # Selecting the selected voice again is not a no-op in espeak-ng 1.51: after it,
            # the next synthesis can lose its first word event. Select only on a change.
            return True
        self.current_voice = None
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            wanted = _Voice(languages=voice.encode())
            if self.lib.espeak_SetVoiceByProperties(ctypes.byref(wanted)) != 0:
                return False
        self.current_voice = voice
        return True

    def clause_phonemes(self, text: str) -> list[str]:
        """IPA of ``text`` in the selected voice, one string per clause espeak-ng reads (it
        also cuts at dashes and before very long runs). Call with :data:`LOCK` held."""
        buffer = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        out = []
        # Each call translates one clause and advances the pointer; NULL after the last.
        while pointer.value is not None:
            ipa = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), _TEXT_UTF8, _PHONEMES_IPA)
            if ipa:
                out.append(ipa.decode("utf-8", errors="replace"))
        return out


class _Voice(ctypes.Structure):
    # espeak_VOICE of speak_lib.h: what espeak_SetVoiceByProperties matches against.
    _fields_ = (
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    )


def library() -> Library:
    """The process-wide espeak-ng library, loaded and initialised on first use.

    Raises:
        DependencyError: no espeak-ng library is installed, or it cannot start.
    """
    global _LIBRARY
    with LOCK:  # two threads' first calls must not both initialise the library
        if _LIBRARY is None:
            _LIBRARY = _load()
        return _LIBRARY


_LIBRARY: Library | None = None


def _load() -> Library:
    path, data = _locate()
    lib = ctypes.CDLL(path)
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = (
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_int,
        ctypes.c_int,
    )
    rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, data, 0)
    if rate <= 0:
        raise DependencyError(f"espeak-ng could not be initialised from {path}")
    return Library(lib, path, int(rate))


def available() -> bool:
    """Whether an espeak-ng library is installed (nothing is loaded)."""
    try:
        _locate()
    except DependencyError:
        return False
    return True


def has_voice(voice: str) -> bool:
    """Whether espeak-ng can select ``voice`` (a voice name or a language such as ``fr-fr``).

    Raises:
        DependencyError: no espeak-ng library.
    """
    handle = library()
    with LOCK:
        return handle.set_voice(voice)


def _locate() -> tuple[str, bytes | None]:
    """The library's path and its data folder (None: the library's built-in default)."""
    try:
        import espeakng_loader

        return espeakng_loader.get_library_path(), espeakng_loader.get_data_path().encode()
    except ImportError:
        pass
    path = ctypes.util.find_library("espeak-ng")
    if path is None:
        raise DependencyError(
            "the espeak-ng library is not installed: apt-get install libespeak-ng1 "
            "(or pip install espeakng-loader)"
        )
    return path, None


def clause_ends(text: str) -> list[int]:
    """Character offsets where the clauses of ``text`` end (after their punctuation).

    A clause ends after ``, ; : ! ? …`` (or their CJK forms) followed by whitespace and more
    text, or after CJK punctuation followed directly by text. A ``.`` followed by a word in
    lower case is an abbreviation (``e.g. this``), not a clause end, as espeak-ng reads it.
    The end of the text is not listed. Offsets depend only on the text up to the first
    visible character after each end, so a prefix of a text has a prefix of its ends.
    """
    ends = []
    for m in _CLAUSE_END.finditer(text):
        after = m.group(2)
        if after is not None and m.group().rstrip(_CLOSERS).endswith(".") and after.islower():
            continue
        ends.append(m.end())
    return ends


def split_clauses(text: str) -> list[str]:
    """``text`` cut at :func:`clause_ends`: the pieces concatenate to ``text``."""
    cuts = [0, *clause_ends(text), len(text)]
    return [text[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def phonemize(text: str, voice: str) -> str:
    """IPA of ``text`` read in espeak-ng ``voice`` (``en-us``, ``de``, ``cmn``, ...).

    Numbers, dates and abbreviations are read out in the voice's language. Words are
    separated by one space, clauses by their end punctuation and a space; the result is in
    Unicode NFD (a diacritic is its own code point). The IPA of a text is that of its clauses
    (:func:`split_clauses`) joined by spaces, empty ones left out.

    Raises:
        DependencyError: no espeak-ng library.
        InputError: espeak-ng has no such voice.
    """
    parts = [_clause_ipa(clause.strip(), voice) for clause in split_clauses(text)]
    return " ".join(p for p in parts if p)


@functools.lru_cache(maxsize=4096)
def _clause_ipa(clause: str, voice: str) -> str:
    """IPA of one clause + its end punctuation. Cached: a text fed in pieces is phonemized
    again from the start of its segment for every new clause."""
    if not clause:
        return ""
    handle = library()
    with LOCK:
        if not handle.set_voice(voice):
            raise InputError(f"espeak-ng has no voice {voice!r}")
        pieces = handle.clause_phonemes(clause)
    words = " ".join(_LANGUAGE_SWITCH.sub("", p).strip() for p in pieces)
    words = unicodedata.normalize("NFD", " ".join(words.split()))
    trailing = _TRAILING.search(clause)
    marks = "".join(_CLAUSE_PUNCTUATION[c] for c in trailing.group(1)) if trailing else ""
    return words + marks
