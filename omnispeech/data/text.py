"""Sentence sources per language, all offline: gettext, Wesnoth, MediaWiki, Scratch, built-in.

Every sentence carries the source it came from and that source's licence, so a corpus can keep
only text that may train a model that is shipped (:attr:`TextSource.redistributable`).

Sources, in the order they are read:

* ``builtin``: a few sentences in a few languages written for this package (CC0-1.0), so that
  ``en``, ``de``, ``fr``, ``es`` and ``it`` always work, even on a bare machine;
* ``gettext``: every ``.mo`` catalog under ``/usr/share/locale`` and LibreOffice's resource
  folder (translated user-interface strings of Debian packages; the msgids give English);
* ``wesnoth``: the ``.mo`` catalogs of the game's campaign text, if ``wesnoth-*-data`` is
  installed (narrative sentences in about 40 languages);
* ``mediawiki``: the JSON message files of MediaWiki's ``i18n`` folders (Debian's ``mediawiki``
  package, extracted, not installed; about 500 language codes);
* ``scratch``: the JSON message files of the ``scratch-l10n`` npm package (the Scratch editor
  and website; the only source of Maori text found).

Catalog strings are filtered to sentence-like text (see :func:`clean_sentences`): UI text holds
markup, format strings and untranslated English, none of which a TTS engine should read.
"""

from __future__ import annotations

import gettext
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# LibreOffice keeps its catalogs apart (libreoffice-l10n-*: a few languages found nowhere else).
LOCALE_DIRS = (Path("/usr/share/locale"), Path("/usr/lib/libreoffice/program/resource"))
WESNOTH_GLOB = "/usr/share/games/wesnoth/*/locale"
# Extracted from the Debian package and the npm tarball (see docs/corpus.md).
MEDIAWIKI_DIR = Path("/opt/mw/usr/share/mediawiki")
SCRATCH_DIR = Path("/opt/scratch-l10n/package")


@dataclass(frozen=True)
class TextSource:
    """Where sentences come from.

    Args:
        name: short id written to the manifest (``builtin``, ``gettext``, ``wesnoth``).
        licence: the licence of the text, as an SPDX-like string.
        redistributable: whether a model trained on it may be shipped.
    """

    name: str
    licence: str
    redistributable: bool


BUILTIN = TextSource("builtin", "CC0-1.0", True)
# Translations in Debian packages are under the package's free licence (GPL/LGPL/MIT mostly);
# training on them is allowed, and the model does not redistribute the catalogs themselves.
GETTEXT = TextSource("gettext", "DFSG-free (licence of each Debian package)", True)
WESNOTH = TextSource("wesnoth", "GPL-2.0-or-later", True)
# Copyleft like the catalogs above: the model is trained on the messages, it does not ship them.
MEDIAWIKI = TextSource("mediawiki", "GPL-2.0-or-later", True)
SCRATCH = TextSource("scratch", "AGPL-3.0-only", True)

# Scripts written without spaces between words: filtered by characters instead of words.
_NO_SPACE = {"zh", "ja", "th", "lo", "km", "my", "bo", "yue"}
_MIN_WORDS, _MAX_WORDS = 4, 20  # shorter UI labels are not sentences; longer ones take too long
_MIN_CHARS, _MAX_CHARS = 15, 220
_MIN_CJK, _MAX_CJK = 8, 60
# Markup, format strings, paths, accelerators, key names: a TTS engine would spell them out.
_BAD = re.compile(r"[%{}<>&\\_$@|=\[\]*#/~^`\t]|\.\.\.|https?:|www\.|\d{3,}")
_LATIN = re.compile(r"[A-Za-z]")
# "no" catalogs are Bokmål written before the nb code existed; LibreOffice's gug is Guarani.
_LOCALE_ALIASES = {"no": "nb", "gug": "gn"}
# MediaWiki / Scratch codes of a script or variant whose text a base-language voice reads; other
# codes with a subtag (sr-ec, be-tarask, de-formal, pt-br) are skipped like ``sr@latin`` above.
_WEB_ALIASES = {
    "tt-cyrl": "tt",
    "gom-deva": "kok",
    "hak-latn": "hak",
    "zh-hans": "zh",
    "zh-cn": "zh",
    "yue-hant": "yue",
}
# The hak voice reads romanised Hakka only: Han characters are dropped from its text.
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_NO_HAN = {"hak"}
_WIKI_BOLD = re.compile(r"'{2,}")
_WIKI_LINK = re.compile(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]")
_SPLIT = re.compile(r"(?<=[.!?。！？])\s+|\n+")


_BUILTIN_TEXT: dict[str, tuple[str, ...]] = {
    "en": (
        "The old sailor painted a green boat before noon.",
        "My sister carried the heavy box to the station.",
        "A quiet engineer opened the kitchen window last winter.",
        "The children found seven letters under the bridge.",
        "Our neighbour forgot the map at the market.",
        "Please close the door when you leave the room.",
        "The train to the coast leaves every hour on weekdays.",
        "She measured the garden twice and bought more seeds.",
        "Rain fell softly on the roofs of the sleeping town.",
        "He described the mountain as a giant made of stone.",
        "We will meet again at the library tomorrow morning.",
        "A small dog waited patiently outside the bakery.",
    ),
    "de": (
        "Der alte Seemann hat vor Mittag ein grünes Boot gestrichen.",
        "Meine Schwester trug die schwere Kiste zum Bahnhof.",
        "Die Kinder fanden sieben Briefe unter der Brücke.",
        "Bitte schließ die Tür, wenn du den Raum verlässt.",
        "Der Zug an die Küste fährt werktags jede Stunde.",
        "Regen fiel leise auf die Dächer der schlafenden Stadt.",
        "Wir treffen uns morgen früh wieder in der Bibliothek.",
        "Ein kleiner Hund wartete geduldig vor der Bäckerei.",
        "Unser Nachbar hat die Karte auf dem Markt vergessen.",
        "Sie hat den Garten zweimal vermessen und mehr Samen gekauft.",
    ),
    "fr": (
        "Le vieux marin a peint un bateau vert avant midi.",
        "Ma sœur a porté la lourde boîte jusqu'à la gare.",
        "Les enfants ont trouvé sept lettres sous le pont.",
        "Ferme la porte quand tu quittes la pièce, s'il te plaît.",
        "Le train pour la côte part toutes les heures en semaine.",
        "La pluie tombait doucement sur les toits de la ville endormie.",
        "Nous nous reverrons demain matin à la bibliothèque.",
        "Un petit chien attendait patiemment devant la boulangerie.",
        "Notre voisin a oublié la carte au marché.",
        "Elle a mesuré le jardin deux fois et acheté plus de graines.",
    ),
    "es": (
        "El viejo marinero pintó un barco verde antes del mediodía.",
        "Mi hermana llevó la caja pesada a la estación.",
        "Los niños encontraron siete cartas debajo del puente.",
        "Por favor, cierra la puerta cuando salgas de la habitación.",
        "El tren a la costa sale cada hora entre semana.",
        "La lluvia caía suavemente sobre los tejados de la ciudad dormida.",
        "Nos veremos otra vez mañana por la mañana en la biblioteca.",
        "Un perro pequeño esperaba con paciencia delante de la panadería.",
        "Nuestro vecino olvidó el mapa en el mercado.",
        "Ella midió el jardín dos veces y compró más semillas.",
    ),
    "it": (
        "Il vecchio marinaio ha dipinto una barca verde prima di mezzogiorno.",
        "Mia sorella ha portato la scatola pesante alla stazione.",
        "I bambini hanno trovato sette lettere sotto il ponte.",
        "Per favore chiudi la porta quando esci dalla stanza.",
        "Il treno per la costa parte ogni ora nei giorni feriali.",
        "La pioggia cadeva piano sui tetti della città addormentata.",
        "Ci vediamo di nuovo domani mattina in biblioteca.",
        "Un piccolo cane aspettava con pazienza davanti al forno.",
        "Il nostro vicino ha dimenticato la mappa al mercato.",
        "Lei ha misurato il giardino due volte e ha comprato altri semi.",
    ),
}


@dataclass(frozen=True)
class Sentence:
    """One sentence of text.

    Args:
        text: the sentence, as it is spoken (before any engine-specific transliteration).
        language: ISO 639 code (``de``, ``pt``, ``zh``), the language of the text.
        source: where it came from.
    """

    text: str
    language: str
    source: TextSource


def locale_language(name: str) -> str | None:
    """The ISO 639 code of a locale folder name (``pt_BR`` -> ``pt``), or None to skip it.

    Script and variant locales (``sr@latin``, ``ca@valencia``, ``en@quot``) are skipped: their
    text does not match the script the engine's voice for the base language expects.
    """
    if "@" in name or name.startswith(("C", "POSIX")):
        return None
    code = name.split(".")[0].split("_")[0].lower()
    if not code.isalpha() or not 2 <= len(code) <= 3:
        return None
    return _LOCALE_ALIASES.get(code, code)


def clean_sentences(strings: Iterable[str], language: str) -> list[str]:
    """Split catalog strings into sentences and keep the sentence-like ones, deduplicated.

    Args:
        strings: raw catalog strings (may hold several sentences and newlines).
        language: ISO 639 code; CJK/Thai-like languages are filtered by characters, not words.

    Returns:
        Distinct sentences in first-seen order: 4-20 words and 15-220 characters (8-60
        characters for scripts without spaces), without markup or format strings.
    """
    seen: dict[str, None] = {}
    for string in strings:
        for part in _SPLIT.split(string):
            s = " ".join(part.split())
            if not s or _BAD.search(s) or s in seen:
                continue
            if language in _NO_SPACE:
                ok = _MIN_CJK <= len(s) <= _MAX_CJK
            else:
                ok = (
                    _MIN_WORDS <= len(s.split()) <= _MAX_WORDS
                    and _MIN_CHARS <= len(s) <= _MAX_CHARS
                )
            # A sentence must hold letters (not a row of digits or punctuation).
            if ok and sum(c.isalpha() for c in s) >= len(s) // 2:
                seen[s] = None
    return list(seen)


def _drop_foreign_latin(sentences: list[str]) -> list[str]:
    """For a language written in a non-Latin script, drop sentences holding Latin letters.

    Catalogs of such languages mix in product names and untranslated English ("VLC", "PNM"),
    which the language's voice would read letter by letter or in another language.
    """
    letters = latin = 0
    for s in sentences:
        letters += sum(c.isalpha() for c in s)
        latin += len(_LATIN.findall(s))
    if letters == 0 or latin > letters / 2:
        return sentences  # a Latin-script language: keep everything
    return [s for s in sentences if not _LATIN.search(s)]


def _read_catalog(path: Path) -> list[tuple[str, str]]:
    """(msgid, msgstr) pairs of a ``.mo`` file; unreadable catalogs give none."""
    try:
        with path.open("rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
    except (OSError, ValueError, UnicodeDecodeError, LookupError, IndexError):
        return []
    pairs = []
    for key, value in catalog.items():
        # Plural forms are keyed (msgid, n); the header has the empty msgid.
        msgid = key[0] if isinstance(key, tuple) else key
        if msgid and isinstance(value, str) and value and value != msgid:
            pairs.append((msgid, value))
    return pairs


def _catalog_strings(roots: Iterable[Path]) -> tuple[dict[str, list[str]], list[str]]:
    """Translated strings per language under ``roots`` (``LANG/LC_MESSAGES/*.mo``), and msgids."""
    per_lang: dict[str, list[str]] = {}
    english: list[str] = []
    for root in roots:
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            lang = locale_language(folder.name)
            if lang is None or lang == "en":
                continue
            for mo in sorted(folder.glob("LC_MESSAGES/*.mo")):
                for msgid, msgstr in _read_catalog(mo):
                    per_lang.setdefault(lang, []).append(msgstr)
                    english.append(msgid)
    return per_lang, english


def web_language(code: str) -> str | None:
    """The ISO 639 code of a MediaWiki / Scratch file name (``tt-cyrl`` -> ``tt``), or None.

    Codes with a subtag are skipped unless listed in ``_WEB_ALIASES`` (their script or variant
    is not the one the base language's voice expects); ``en`` is skipped (it is the source), and
    so are MediaWiki's pseudo-languages ``qqq`` and ``qqx``.
    """
    code = code.lower().replace("_", "-")
    if code in _WEB_ALIASES:
        return _WEB_ALIASES[code]
    # qqq holds English notes for translators, qqx the message keys.
    if "-" in code or code in {"en", "qqq", "qqx"} or not code.isalpha() or not 2 <= len(code) <= 3:
        return None
    return _LOCALE_ALIASES.get(code, code)


def strip_wiki_markup(text: str) -> str:
    """Remove MediaWiki bold / italics quotes and keep the shown text of links.

    ``''a''`` -> ``a``, ``[[Page|shown]]`` -> ``shown``, ``[[Page]]`` -> ``Page``. Templates
    (``{{PLURAL:...}}``), parameters (``$1``) and tags stay: :func:`clean_sentences` drops them.
    """
    return _WIKI_LINK.sub(r"\1", _WIKI_BOLD.sub("", text))


def _read_json(path: Path) -> dict[str, object]:
    """A JSON object from ``path``; an unreadable file or another JSON value gives ``{}``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _message(value: object) -> str | None:
    """The text of a message: a string, or ``{"message": str}`` (Scratch's website files)."""
    if isinstance(value, dict):
        value = value.get("message")
    return value if isinstance(value, str) and value else None


def _json_messages(folders: Iterable[Path], wiki: bool) -> dict[str, list[str]]:
    """Translated messages per language from folders of ``LANG.json`` files beside ``en.json``.

    Keys starting with ``@`` (``@metadata``) and values equal to the English one (untranslated)
    are skipped; ``wiki`` strips MediaWiki markup; Han characters are dropped where the voice
    reads a romanisation (:data:`_NO_HAN`).
    """
    per_lang: dict[str, list[str]] = {}
    for folder in folders:
        english = {k: _message(v) for k, v in _read_json(folder / "en.json").items()}
        for path in sorted(folder.glob("*.json")):
            lang = web_language(path.stem)
            if lang is None:
                continue
            for key, value in _read_json(path).items():
                text = _message(value)
                if key.startswith("@") or text is None or text == english.get(key):
                    continue
                if wiki:
                    text = strip_wiki_markup(text)
                if lang in _NO_HAN and _HAN.search(text):
                    continue
                per_lang.setdefault(lang, []).append(text)
    return per_lang


def mediawiki_messages(root: Path = MEDIAWIKI_DIR) -> dict[str, list[str]]:
    """Translated MediaWiki messages per language: every ``**/i18n/**`` folder with an ``en.json``.

    Args:
        root: MediaWiki's install folder (core and bundled extensions and skins under it); a
            missing folder gives ``{}``.
    """
    if not root.is_dir():
        return {}
    folders = sorted({p.parent for p in root.glob("**/i18n/**/en.json")})
    return _json_messages(folders, wiki=True)


def scratch_messages(root: Path = SCRATCH_DIR) -> dict[str, list[str]]:
    """Translated Scratch messages per language: ``editor/*/LANG.json`` and ``www/*/LANG.json``.

    Args:
        root: the extracted ``package`` folder of the ``scratch-l10n`` npm tarball; a missing
            folder gives ``{}``.
    """
    if not root.is_dir():
        return {}
    folders = sorted(p.parent for part in ("editor", "www") for p in root.glob(f"{part}/*/en.json"))
    return _json_messages(folders, wiki=False)


def gather_sentences(
    locale_dirs: Iterable[Path] = LOCALE_DIRS,
    wesnoth_glob: str | None = WESNOTH_GLOB,
    redistributable: bool = False,
    mediawiki_dir: Path | None = MEDIAWIKI_DIR,
    scratch_dir: Path | None = SCRATCH_DIR,
) -> dict[str, list[Sentence]]:
    """All distinct sentences available on this machine, per language.

    Args:
        locale_dirs: folders holding ``LANG/LC_MESSAGES/*.mo`` gettext catalogs.
        wesnoth_glob: a glob for Wesnoth's translation folders, or None to skip them.
        mediawiki_dir: MediaWiki's folder (``**/i18n/*.json``), or None; skipped if absent.
        scratch_dir: the ``scratch-l10n`` package folder, or None; skipped if absent.
        redistributable: keep only sources whose licence lets a trained model be shipped.

    Returns:
        ``{language: [Sentence, ...]}``; each language's sentences are distinct, in a fixed
        order (the same on every call on the same machine), first the built-in ones.
    """
    sources: list[tuple[TextSource, dict[str, list[str]]]] = [
        (BUILTIN, {k: list(v) for k, v in _BUILTIN_TEXT.items()})
    ]
    per_lang, english = _catalog_strings(Path(p) for p in locale_dirs)
    per_lang["en"] = english
    sources.append((GETTEXT, per_lang))
    if wesnoth_glob:
        roots = sorted(Path("/").glob(wesnoth_glob.lstrip("/")))
        sources.append((WESNOTH, _catalog_strings(roots)[0]))
    if mediawiki_dir is not None:
        sources.append((MEDIAWIKI, mediawiki_messages(Path(mediawiki_dir))))
    if scratch_dir is not None:
        sources.append((SCRATCH, scratch_messages(Path(scratch_dir))))
    result: dict[str, list[Sentence]] = {}
    for source, texts in sources:
        if redistributable and not source.redistributable:
            continue
        for lang, strings in texts.items():
            have = {s.text for s in result.get(lang, [])}
            kept = _drop_foreign_latin(clean_sentences(strings, lang))
            new = [Sentence(s, lang, source) for s in kept if s not in have]
            if new:
                result.setdefault(lang, []).extend(new)
    return dict(sorted(result.items()))
