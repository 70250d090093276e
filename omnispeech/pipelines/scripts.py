"""Which writing systems a language is read from, so that text in another one is refused.

espeak-ng reads any character in any voice, but not as a user means it: Chinese characters
in the English voice come out as "Chinese letter", and Cyrillic words as a string of letter
names. A phoneme front end would feed that to its talker and speak nonsense with a straight
face, so it checks the text first (:func:`check_script`) and names the language to choose.

Latin letters are accepted in every language: espeak-ng reads them as English words inside
a voice of another script (brand names in Russian text, say), which is what a reader does.
Marks, digits, punctuation and symbols are never refused; digits are read in the language.
"""

from __future__ import annotations

import unicodedata

from omnispeech.errors import LanguageError
from omnispeech.pipelines.languages import LANGUAGE_NAMES, language_name

LATIN = "Latin"

# Writing systems other than Latin, with the languages (ISO 639 codes of LANGUAGE_NAMES) that
# are written in each. The first language of a script is the one suggested for its text.
_LANGUAGES_OF_SCRIPT: dict[str, tuple[str, ...]] = {
    "Han": ("zh", "yue", "hak", "ja", "ko"),
    "Hiragana": ("ja",),
    "Katakana": ("ja",),
    "Hangul": ("ko",),
    "Bopomofo": ("zh",),
    "Cyrillic": ("ru", "uk", "be", "bg", "mk", "sr", "kk", "ky", "ba", "tt", "cv", "nog"),
    "Greek": ("el", "grc"),
    "Arabic": ("ar", "fa", "ur", "sd", "ug"),
    "Hebrew": ("he",),
    "Devanagari": ("hi", "mr", "ne", "kok"),
    "Bengali": ("bn", "as", "bpy"),
    "Gurmukhi": ("pa",),
    "Gujarati": ("gu",),
    "Oriya": ("or",),
    "Tamil": ("ta",),
    "Telugu": ("te",),
    "Kannada": ("kn",),
    "Malayalam": ("ml",),
    "Sinhala": ("si",),
    "Myanmar": ("my", "shn"),
    "Georgian": ("ka",),
    "Armenian": ("hy", "hyw"),
    "Ethiopic": ("am",),
    "Thai": ("th",),
}
# Unicode character names start with their script's name, in capitals ("CYRILLIC SMALL
# LETTER A"); ideographs are "CJK UNIFIED IDEOGRAPH-4F60", width variants carry a prefix.
_NAME_PREFIX = {name.upper(): name for name in (LATIN, *_LANGUAGES_OF_SCRIPT)}
_NAME_PREFIX["CJK"] = "Han"
_WIDTH_PREFIXES = ("FULLWIDTH ", "HALFWIDTH ")


def _scripts_of(code: str) -> frozenset[str]:
    return frozenset([LATIN, *(s for s, codes in _LANGUAGES_OF_SCRIPT.items() if code in codes)])


SCRIPTS: dict[str, frozenset[str]] = {code: _scripts_of(code) for code in LANGUAGE_NAMES}
"""The writing systems each known language (ISO 639 code) is read from; Latin in all."""


def script_of(char: str) -> str | None:
    """The writing system of one letter (``"Cyrillic"``, ``"Han"``, ``"Latin"``...), or None
    for a character that is not a letter of a script this module knows (digits, punctuation,
    marks, modifier letters such as the Japanese length mark)."""
    if not unicodedata.category(char).startswith("L") or unicodedata.category(char) == "Lm":
        return None
    name = unicodedata.name(char, "")
    for prefix in _WIDTH_PREFIXES:
        name = name.removeprefix(prefix)
    return _NAME_PREFIX.get(name.split(" ", 1)[0].split("-", 1)[0])


def check_script(text: str, language: str) -> None:
    """Refuse ``text`` with letters of a writing system ``language`` is not read from.

    Args:
        text: the text to be spoken.
        language: an ISO 639 code; a code this module does not know is not checked.

    Raises:
        LanguageError: one line naming the script, the first offending word and the
            language to choose instead.
    """
    allowed = SCRIPTS.get(language)
    if allowed is None:
        return
    for word in text.split():
        for char in word:
            script = script_of(char)
            if script is None or script in allowed:
                continue
            suggestion = _LANGUAGES_OF_SCRIPT[script][0]
            raise LanguageError(
                f"{word!r} is written in {script} script, which {language_name(language)} "
                f"({language}) text is not; give the text's language instead, e.g. "
                f"{suggestion} ({language_name(suggestion)})"
            )
