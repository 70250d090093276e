"""espeak-ng as a library: speech with the exact time of every word it speaks.

The command-line engine (:class:`~omnispeech.data.engines.EspeakNG`) writes audio only; the
library reports, while it synthesises, an event for each word with its position in the text
and in the audio. That gives a true word alignment for any text in any espeak-ng voice: the
reference for measuring word timestamps, and alignments for training streams. It lives with
the pipelines so that the corpus tools and the training recipes (which align transcripts with
it) can both reach it.

The C API is reached through ctypes, through the one handle this process shares with the
phoneme front end (:mod:`omnispeech.pipelines.espeak`: Debian's ``libespeak-ng1``, or the
library inside the ``espeakng-loader`` wheel when that is installed).
"""

from __future__ import annotations

import ctypes
import dataclasses

import numpy as np

from omnispeech.errors import InputError
from omnispeech.pipelines.espeak import LOCK, library

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


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclasses.dataclass(frozen=True)
class SpokenWord:
    """A word as espeak-ng spoke it: its text, start time in seconds, and where it begins in
    the text given to :meth:`EspeakLibrary.speak` (characters from 0; espeak-ng may report a
    written word in parts, e.g. "42" as "forty" at offset 0 and "two" at offset 1)."""

    text: str
    start: float
    offset: int = -1


class EspeakLibrary:
    """Speech with word times from the process-wide espeak-ng library
    (:func:`omnispeech.pipelines.espeak.library`); calls are serialised by its lock, since the
    library is not re-entrant and its voice and callback are global.

    Raises:
        DependencyError: no espeak-ng library is installed.
    """

    def __init__(self) -> None:
        self._handle = library()
        self.lib = self._handle.lib
        self.sample_rate = self._handle.sample_rate
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int]] = []
        self._callback = _CALLBACK(self._on_audio)  # kept alive as long as this object

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

    def speak(self, text: str, voice: str) -> tuple[np.ndarray, list[SpokenWord]]:
        """Synthesise ``text`` with ``voice`` (``en-us``, ``de+f3``, ...).

        Returns:
            samples ``[S]`` float32 at :attr:`sample_rate`, and the words with start times.

        Raises:
            InputError: an unknown voice.
        """
        with LOCK:
            if not self._handle.set_voice(voice):
                raise InputError(f"espeak-ng has no voice {voice!r}")
            # The callback is global to the library: claim it for this call.
            self.lib.espeak_SetSynthCallback(self._callback)
            self._chunks, self._events = [], []
            data = text.encode("utf-8")
            self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
            chunks, events = self._chunks, self._events
        wav = np.concatenate(chunks).astype(np.float32) / 32768 if chunks else np.zeros(0)
        # text_position counts characters from 1; slice the words out of the text.
        words = [
            SpokenWord(text[pos - 1 : pos - 1 + length], ms / 1000, pos - 1)
            for pos, length, ms in events
            if length > 0
        ]
        return wav.astype(np.float32), words
