"""espeak-ng as a library: speech with the exact time of every word it speaks.

The command-line engine (:class:`~omnispeech.data.engines.EspeakNG`) writes audio only; the
library reports, while it synthesises, an event for each word with its position in the text
and in the audio. That gives a true word alignment for any text in any espeak-ng voice: the
reference for measuring word timestamps, and alignments for training streams.

The C API is reached through ctypes (Debian's ``libespeak-ng1``, or the library inside the
``espeakng-loader`` wheel when that is installed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import threading

import numpy as np

from omnispeech.errors import DependencyError, InputError

_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_EVENT_WORD = 1
_EVENT_END = 0


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # a union of int / const char* / char[8]: 8 bytes
    ]


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


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclasses.dataclass(frozen=True)
class SpokenWord:
    """A word as espeak-ng spoke it: its text and start time in seconds."""

    text: str
    start: float


class EspeakLibrary:
    """One loaded espeak-ng library (calls are serialised: the library is not re-entrant).

    Raises:
        DependencyError: no espeak-ng library is installed.
    """

    _lock = threading.Lock()

    def __init__(self) -> None:
        path, data = _locate()
        self.lib = ctypes.CDLL(path)
        self.lib.espeak_Initialize.restype = ctypes.c_int
        rate = self.lib.espeak_Initialize(_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise DependencyError(f"espeak-ng could not be initialised from {path}")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int]] = []
        self._callback = _CALLBACK(self._on_audio)  # kept alive as long as the library
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n: int, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_END:
            e = events[i]
            if e.type == _EVENT_WORD:
                self._events.append((e.text_position, e.length, e.audio_position))
            i += 1
        return 0

    def _set_voice(self, voice: str) -> bool:
        """Select ``voice`` as the espeak-ng program does: by voice file name first, then by
        language (``fr-fr`` names no voice file but is the French voice's language; a
        ``+variant`` suffix is honoured either way)."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) == 0:
            return True
        wanted = _Voice(languages=voice.encode())
        return self.lib.espeak_SetVoiceByProperties(ctypes.byref(wanted)) == 0

    def speak(self, text: str, voice: str) -> tuple[np.ndarray, list[SpokenWord]]:
        """Synthesise ``text`` with ``voice`` (``en-us``, ``de+f3``, ...).

        Returns:
            samples ``[S]`` float32 at :attr:`sample_rate`, and the words with start times.

        Raises:
            InputError: an unknown voice.
        """
        with self._lock:
            if not self._set_voice(voice):
                raise InputError(f"espeak-ng has no voice {voice!r}")
            self._chunks, self._events = [], []
            data = text.encode("utf-8")
            self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
            chunks, events = self._chunks, self._events
        wav = np.concatenate(chunks).astype(np.float32) / 32768 if chunks else np.zeros(0)
        # text_position counts characters from 1; slice the words out of the text.
        words = [
            SpokenWord(text[pos - 1 : pos - 1 + length], ms / 1000)
            for pos, length, ms in events
            if length > 0
        ]
        return wav.astype(np.float32), words


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
