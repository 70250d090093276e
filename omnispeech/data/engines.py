"""Offline TTS engines of Debian, one small class each: which voices, and text -> wav file.

Every engine runs its program in a subprocess and writes a wav at the engine's own rate; the
builder (:mod:`omnispeech.data.build`) resamples, trims and normalises it. An engine whose
program is missing reports the Debian package to install (:attr:`Engine.package`).

Speaker ids are global: the same person (or the same espeak-ng variant) has one id in every
language and every engine that has their voice (CMU ARCTIC ``slt`` is in flite, festival and
RHVoice), so splits by speaker are disjoint across the whole corpus.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_TIMEOUT = 60  # seconds per call; a long sentence takes well under 5 s in every engine


@dataclass(frozen=True)
class Voice:
    """One voice of one engine in one language.

    Args:
        engine: engine name (``espeak-ng``, ``flite``, ...).
        name: the engine's own voice id (``de+f3``, ``slt``, ``mb-de2``).
        language: ISO 639 code of the text it reads.
        speaker: global speaker id, the same for one person across engines and languages.
        licence: licence of the voice (it governs the audio made with it).
        redistributable: whether a model trained on its audio may be shipped.
    """

    engine: str
    name: str
    language: str
    speaker: str
    licence: str
    redistributable: bool


class SynthesisError(RuntimeError):
    """The engine failed on a text (non-zero exit, timeout, or no file written)."""


class Engine:
    """Base class: a TTS program that turns text into a wav file.

    Subclasses set :attr:`name`, :attr:`program`, :attr:`package` and implement
    :meth:`voices` and :meth:`_command`.
    """

    name = ""
    program = ""
    package = ""  # the Debian package that provides `program`
    text_encoding = "utf-8"  # what the program expects on stdin / in its text file

    def __init__(self, program: str | None = None) -> None:
        # `program` overrides the executable (a full path, or a bogus name in tests).
        if program is not None:
            self.program = program

    def programs(self) -> tuple[str, ...]:
        """Every program the engine runs (all must be installed)."""
        return (self.program,)

    def missing_programs(self) -> list[str]:
        """The programs of :meth:`programs` that are not installed."""
        return [p for p in self.programs() if shutil.which(p) is None]

    def available(self) -> bool:
        """Whether the engine's programs are installed."""
        return not self.missing_programs()

    def install_hint(self) -> str:
        """One line naming the programs that are missing and the Debian package to install."""
        missing = ", ".join(f"`{p}`" for p in self.missing_programs()) or f"`{self.program}`"
        hint = f"apt-get install {self.package}"
        return f"{self.name}: {missing} not found, its voices are skipped; {hint}"

    def voices(self, languages: set[str]) -> list[Voice]:
        """The installed voices that read one of ``languages`` (ISO 639 codes)."""
        raise NotImplementedError

    def _command(self, text: str, voice: Voice, out: Path, speed: float, pitch: float) -> list[str]:
        raise NotImplementedError

    def prepare_text(self, text: str, voice: Voice) -> str:
        """Text as the engine must receive it (transliteration, for instance); default as is."""
        return text

    def synthesise(
        self, text: str, voice: Voice, out: Path, speed: float = 1.0, pitch: float = 1.0
    ) -> None:
        """Speak ``text`` with ``voice`` into the wav file ``out`` (the engine's own rate).

        Args:
            text: one sentence in ``voice.language``.
            voice: one of :meth:`voices`.
            out: destination ``.wav`` path (its folder must exist).
            speed: speaking-rate factor, 1.0 = the voice's default (about 0.85-1.15 is natural).
            pitch: pitch factor, 1.0 = the voice's default.

        Raises:
            SynthesisError: the program failed or wrote nothing.
        """
        text = self.prepare_text(text, voice)
        cmd = self._command(text, voice, out, speed, pitch)
        try:
            subprocess.run(
                cmd,
                input=self._stdin(text),
                capture_output=True,
                timeout=_TIMEOUT,
                check=True,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
            raise SynthesisError(f"{self.name} {voice.name}: {err}") from None
        if not out.exists() or out.stat().st_size <= 44:  # 44 bytes: a wav header alone
            raise SynthesisError(f"{self.name} {voice.name}: wrote no audio")

    def _stdin(self, text: str) -> bytes | None:
        return None


# espeak-ng variants that sound like distinct speakers: a greedy pick with every pair below
# 0.75 cosine on resemblyzer speaker embeddings (same voice, two texts: 0.94), plus m1..f5.
ESPEAK_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "Marco", "AnxiousAndy", "travis", "norbert", "edward", "belinda", "whisper", "Denis",
    "david", "shelby", "kaukovalta", "iven", "UniRobot", "gustave", "robert", "robosoft8",
    "sandro", "steph3", "klatt3", "robosoft", "robosoft6", "anika",
)  # fmt: skip
# ISO 639 code -> espeak-ng voice, where the voice name is not the code itself.
_ESPEAK_ALIASES = {
    "en": "en-us",
    "fr": "fr-fr",
    "zh": "cmn-latn-pinyin",  # Debian's cmn dictionary lacks most Hanzi: read pinyin instead
    "pt": "pt",
    "vi": "vi",
    "fa": "fa",
    "es": "es",
}


class EspeakNG(Engine):
    """espeak-ng (GPL-3.0): ~130 languages; each variant × pitch is a pseudo-speaker.

    The audio it makes is not covered by the GPL, so it may train a shipped model.
    """

    name = "espeak-ng"
    program = "espeak-ng"
    package = "espeak-ng"

    def __init__(self, program: str | None = None, variants: tuple[str, ...] = ESPEAK_VARIANTS):
        super().__init__(program)
        self.variants = variants

    def language_voices(self) -> dict[str, str]:
        """ISO 639 code -> espeak-ng voice name, for every language espeak-ng lists."""
        try:
            listing = subprocess.run(
                [self.program, "--voices"], capture_output=True, text=True, check=True
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            return {}
        names = {line.split()[1] for line in listing.splitlines()[1:] if line.split()}
        result = {n: n for n in names if "-" not in n}
        for code, voice in _ESPEAK_ALIASES.items():
            if voice in names:
                result[code] = voice
        return result

    def voices(self, languages: set[str]) -> list[Voice]:
        table = self.language_voices()
        return [
            Voice(self.name, f"{table[lang]}+{v}", lang, f"espeak-{v}", "GPL-3.0-or-later", True)
            for lang in sorted(languages & table.keys())
            for v in self.variants
        ]

    def prepare_text(self, text: str, voice: Voice) -> str:
        return transliterate(text, voice.language)

    def _command(self, text: str, voice: Voice, out: Path, speed: float, pitch: float) -> list[str]:
        # espeak-ng: 175 words per minute and pitch 50 (of 0-99) are the defaults.
        wpm, pitch_value = round(175 * speed), min(99, max(0, round(50 * pitch)))
        # No -q: with -q, mbrola voices write an empty file (see Mbrola below).
        return [self.program, "-v", voice.name, "-s", str(wpm), "-p", str(pitch_value),
                "-w", str(out), "--", text]  # fmt: skip


def transliterate(text: str, language: str) -> str:
    """Text espeak-ng can read: Mandarin to tone-numbered pinyin, Japanese kanji to hiragana.

    Needs ``pypinyin`` / ``pykakasi`` (the ``data`` extra); without them the text is returned
    as is, and espeak-ng reads most of it as foreign letters (the silence check then drops
    nothing, so install the extra for zh and ja).
    """
    if language == "zh":
        try:
            from pypinyin import Style, lazy_pinyin
        except ImportError:
            return text
        return " ".join(lazy_pinyin(text, style=Style.TONE3, errors="ignore"))
    if language == "ja":
        try:
            import pykakasi
        except ImportError:
            return text
        return "".join(item["hira"] for item in pykakasi.kakasi().convert(text))
    return text


# MBROLA voice -> (language, sex); each voice is one recorded speaker. Voice licences restrict
# redistribution of the voices and of audio made with them, hence not redistributable.
_MBROLA = {
    "us1": "en", "us2": "en", "us3": "en", "en1": "en", "de1": "de", "de2": "de", "de3": "de",
    "de4": "de", "de5": "de", "de6": "de", "de7": "de", "fr1": "fr", "fr2": "fr", "fr3": "fr",
    "fr4": "fr", "fr6": "fr", "es1": "es", "es2": "es", "es3": "es", "es4": "es", "it1": "it",
    "it3": "it", "it4": "it", "nl1": "nl", "nl2": "nl", "nl3": "nl", "pl1": "pl", "cz1": "cs",
    "cz2": "cs", "ro1": "ro", "sw1": "sv", "sw2": "sv", "pt1": "pt", "br1": "pt", "br3": "pt",
    "gr1": "el", "gr2": "el", "hu1": "hu", "tr1": "tr", "tr2": "tr", "ir1": "fa", "la1": "la",
    "lt1": "lt", "lt2": "lt", "ee1": "et", "is1": "is", "id1": "id", "ma1": "ms", "hb1": "he",
    "hb2": "he", "in1": "hi", "in2": "hi", "af1": "af", "cr1": "hr", "mx1": "es", "mx2": "es",
    "vz1": "es", "ca1": "fr", "ca2": "fr", "bz1": "br", "jp1": "ja", "jp2": "ja", "jp3": "ja",
    "te1": "te", "cn1": "zh", "ar1": "ar", "ar2": "ar", "nz1": "mi",
}  # fmt: skip


class Mbrola(EspeakNG):
    """MBROLA diphone voices (Debian contrib/non-free), driven through espeak-ng ``mb-*``."""

    name = "mbrola"
    package = "mbrola mbrola-us1 (one mbrola-xx package per voice; contrib/non-free)"
    voice_dir = Path("/usr/share/mbrola")

    def programs(self) -> tuple[str, ...]:
        # espeak-ng drives the voices; the `mbrola` program synthesises them.
        return (self.program, "mbrola")

    def voices(self, languages: set[str]) -> list[Voice]:
        return [
            Voice(self.name, f"mb-{v}", lang, f"mbrola-{v}", "MBROLA voice licence", False)
            for v, lang in sorted(_MBROLA.items())
            if lang in languages and (self.voice_dir / v).exists()
        ]


class Flite(Engine):
    """flite (BSD-like): CMU ARCTIC clustergen voices awb, rms, slt and the diphone kal16."""

    name = "flite"
    program = "flite"
    package = "flite"
    _VOICES = {"slt": "cmu-slt", "rms": "cmu-rms", "awb": "cmu-awb", "kal16": "cmu-kal"}

    def voices(self, languages: set[str]) -> list[Voice]:
        if "en" not in languages:
            return []
        return [
            Voice(self.name, v, "en", s, "BSD-4-Clause-CMU", True) for v, s in self._VOICES.items()
        ]

    def _command(self, text: str, voice: Voice, out: Path, speed: float, pitch: float) -> list[str]:
        # duration_stretch > 1 is slower speech; int_f0_target_mean is the mean pitch in Hz.
        return [self.program, "-voice", voice.name, "--setf", f"duration_stretch={1 / speed:.3f}",
                "-t", text, "-o", str(out)]  # fmt: skip


class Festival(Engine):
    """festival 2.5 ``text2wave`` (free voices in Debian main; see each festvox package)."""

    name = "festival"
    program = "text2wave"
    package = "festival festvox-kallpc16k (and festvox-* voices)"
    voice_root = Path("/usr/share/festival/voices")
    # voice -> (language, speaker, input encoding): latin-1/latin-2 voices spell UTF-8 out.
    _VOICES = {
        "kal_diphone": ("en", "cmu-kal", "utf-8"),
        "cmu_us_slt_arctic_hts": ("en", "cmu-slt", "utf-8"),
        "msu_ru_nsh_clunits": ("ru", "festival-msu-nsh", "utf-8"),
        # Not the festvox-*-nsk voices (hi, mr, te): in Debian 12 they fail to load
        # ("could not open file hindi_phones.scm") and write nothing.
        "suo_fi_lj_diphone": ("fi", "festival-fi-lj", "latin-1"),
        "hy_fi_mv_diphone": ("fi", "festival-fi-mv", "latin-1"),
        "lp_diphone": ("it", "festival-it-lp", "latin-1"),
        "pc_diphone": ("it", "festival-it-pc", "latin-1"),
        "upc_ca_ona_hts": ("ca", "festival-ca-ona", "latin-1"),
        "czech_dita": ("cs", "festival-cs-dita", "latin-2"),
        "czech_machac": ("cs", "festival-cs-machac", "latin-2"),
    }

    def voices(self, languages: set[str]) -> list[Voice]:
        installed = {p.name for p in self.voice_root.glob("*/*")}
        return [
            Voice(self.name, v, lang, spk, "festvox (free, Debian main)", True)
            for v, (lang, spk, _) in self._VOICES.items()
            if lang in languages and v in installed
        ]

    def synthesise(
        self, text: str, voice: Voice, out: Path, speed: float = 1.0, pitch: float = 1.0
    ) -> None:
        encoding = self._VOICES[voice.name][2]
        try:
            data = text.encode(encoding)
        except UnicodeEncodeError:
            # A letter outside latin-1/2 would be spelled out or skipped: refuse the text.
            raise SynthesisError(f"festival {voice.name}: text not in {encoding}") from None
        txt = out.with_suffix(".txt")
        txt.write_bytes(data)
        try:
            super().synthesise(text, voice, out, speed, pitch)
        finally:
            txt.unlink(missing_ok=True)

    def _command(self, text: str, voice: Voice, out: Path, speed: float, pitch: float) -> list[str]:
        setup = f"(begin (voice_{voice.name}) (Parameter.set 'Duration_Stretch {1 / speed:.3f}))"
        # The text goes through a file next to `out`, written by `synthesise` in its encoding.
        return [self.program, "-eval", setup, "-o", str(out), str(out.with_suffix(".txt"))]


class Pico(Engine):
    """SVOX pico (``libttspico-utils``, Debian non-free): one voice in each of 6 locales."""

    name = "pico"
    program = "pico2wave"
    package = "libttspico-utils (non-free)"
    _LOCALES = {"en": "en-US", "de": "de-DE", "fr": "fr-FR", "es": "es-ES", "it": "it-IT"}

    def voices(self, languages: set[str]) -> list[Voice]:
        # Debian puts pico in non-free: the lingware has no source; not for shipped models.
        return [
            Voice(self.name, loc, lang, f"pico-{loc}", "SVOX pico lingware (non-free)", False)
            for lang, loc in self._LOCALES.items()
            if lang in languages
        ]

    def _command(self, text: str, voice: Voice, out: Path, speed: float, pitch: float) -> list[str]:
        return [self.program, "-l", voice.name, "-w", str(out), text]


# RHVoice voice -> (language, licence); licences from /usr/share/doc/rhvoice-*/copyright.
_RHVOICE = {
    "alan": ("en", "LGPL-2.1-or-later"), "bdl": ("en", "LGPL-2.1-or-later"),
    "clb": ("en", "LGPL-2.1-or-later"), "slt": ("en", "LGPL-2.1-or-later"),
    "evgeniy-eng": ("en", "CC-BY-NC-ND-4.0"), "lyubov": ("en", "CC-BY-NC-ND-4.0"),
    "aleksandr": ("ru", "LGPL-2.1-or-later"), "aleksandr-hq": ("ru", "CC-BY-SA-4.0"),
    "anna": ("ru", "LGPL-2.1-or-later"), "elena": ("ru", "LGPL-2.1-or-later"),
    "irina": ("ru", "LGPL-2.1-or-later"), "arina": ("ru", "CC-BY-NC-ND-4.0"),
    "artemiy": ("ru", "CC-BY-NC-ND-4.0"), "evgeniy-rus": ("ru", "CC-BY-NC-ND-4.0"),
    "mikhail": ("ru", "CC-BY-NC-ND-4.0"), "pavel": ("ru", "CC-BY-NC-ND-4.0"),
    "tatiana": ("ru", "CC-BY-NC-ND-4.0"), "victoria": ("ru", "CC-BY-NC-ND-4.0"),
    "vitaliy": ("ru", "CC-BY-NC-ND-4.0"), "yuriy": ("ru", "CC-BY-NC-ND-4.0"),
    "anatol": ("uk", "LGPL-2.1-or-later"), "natalia": ("uk", "LGPL-2.1-or-later"),
    "marianna": ("uk", "CC-BY-ND-4.0"), "volodymyr": ("uk", "CC-BY-ND-4.0"),
    "magda": ("pl", "CC-BY-NC-ND-4.0"), "natan": ("pl", "CC-BY-NC-ND-4.0"),
    "Leticia-F123": ("pt", "CC-BY-SA-4.0"), "spomenka": ("eo", "LGPL-2.1-or-later"),
    "azamat": ("ky", "LGPL-2.1-or-later"), "nazgul": ("ky", "LGPL-2.1-or-later"),
    "kiko": ("mk", "CC-BY-NC-SA-4.0"), "suze": ("mk", "CC-BY-NC-ND-4.0"),
    "talgat": ("tt", "RHVoice Talgat licence"), "hana": ("sq", "CC-BY-NC-SA-4.0"),
}  # fmt: skip
_FREE_FOR_MODELS = {"LGPL-2.1-or-later", "CC-BY-SA-4.0"}
# The same person under two names or engines (resemblyzer cosine 0.80-0.89, see the docs).
_RHVOICE_SPEAKERS = {
    "slt": "cmu-slt",
    "alan": "cmu-awb",
    "bdl": "cmu-bdl",
    "clb": "cmu-clb",
    "evgeniy-eng": "rhvoice-evgeniy",
    "evgeniy-rus": "rhvoice-evgeniy",
}


class RHVoice(Engine):
    """RHVoice 1.8 (Debian non-free): 34 statistical voices of real speakers, 10 languages."""

    name = "rhvoice"
    program = "RHVoice-test"
    package = "rhvoice rhvoice-english (and rhvoice-<language>; non-free)"
    voice_dir = Path("/usr/share/RHVoice/voices")

    def voices(self, languages: set[str]) -> list[Voice]:
        return [
            Voice(
                self.name,
                v,
                lang,
                _RHVOICE_SPEAKERS.get(v, f"rhvoice-{v.lower()}"),
                lic,
                lic in _FREE_FOR_MODELS,
            )  # fmt: skip
            for v, (lang, lic) in _RHVOICE.items()
            if lang in languages and (self.voice_dir / v).exists()
        ]

    def _stdin(self, text: str) -> bytes:
        return text.encode()

    def _command(self, text: str, voice: Voice, out: Path, speed: float, pitch: float) -> list[str]:
        # -r / -t are percentages of the voice's default rate and pitch.
        return [self.program, "-p", voice.name, "-r", str(round(100 * speed)),
                "-t", str(round(100 * pitch)), "-o", str(out)]  # fmt: skip


def default_engines() -> list[Engine]:
    """One instance of every engine this module knows, espeak-ng first."""
    return [EspeakNG(), Mbrola(), Flite(), Festival(), Pico(), RHVoice()]
