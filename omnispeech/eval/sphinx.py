"""An independent judge of English intelligibility: CMU PocketSphinx.

Scoring a TTS model with a recogniser trained on the same synthetic voices flatters it (both
learnt the same engines' accents). PocketSphinx's US English acoustic model, language model
and dictionary ship inside its wheel (``pip install pocketsphinx``), were trained on recorded
people, and nothing here ever trained on them, so its word error rate on synthesised English
is an outside opinion. Its absolute WER on clear speech is high (a small 2010s HMM-GMM model);
compare it with what it scores on the reference recordings of the same sentences.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np

from omnispeech.audio import load_audio
from omnispeech.errors import DependencyError, InputError

SAMPLE_RATE = 16000  # the wheel's acoustic model is 16 kHz


@dataclasses.dataclass(frozen=True)
class SphinxResult:
    """One transcript (the :class:`omnispeech.eval.asr.Transcriber` protocol's result)."""

    text: str


class PocketSphinx:
    """English transcription with PocketSphinx's bundled US English model.

    One decoder is built on first use and shared behind a lock (it holds per-utterance
    state and takes about a second to load).
    """

    languages = ("en",)

    def __init__(self) -> None:
        self._decoder = None
        self._lock = threading.Lock()

    def _get(self):
        if self._decoder is None:
            try:
                from pocketsphinx import Decoder
            except ImportError:
                raise DependencyError(
                    "the English judge needs pocketsphinx: pip install 'omnispeech[eval]'"
                ) from None
            # logfn silences the decoder's configuration dump on stderr.
            self._decoder = Decoder(samprate=SAMPLE_RATE, logfn="/dev/null")
        return self._decoder

    def transcribe(
        self, audio: str | Path | np.ndarray, *, language: str | None = None
    ) -> SphinxResult:
        """Transcribe English speech.

        Args:
            audio: a file (any rate; resampled), or ``[S]`` float32 samples at 16 kHz.
            language: must be ``"en"`` (or None, meaning English).

        Returns:
            The recognised words, lower case (empty when nothing was recognised).

        Raises:
            InputError: another language (the bundled model is English only).
        """
        if language not in (None, "en"):
            raise InputError(f"pocketsphinx judges English only, not {language!r}")
        wav = load_audio(audio, SAMPLE_RATE) if isinstance(audio, str | Path) else audio
        pcm = (np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0) * 32767).astype("<i2")
        with self._lock:
            decoder = self._get()
            decoder.start_utt()
            decoder.process_raw(pcm.tobytes(), full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
        return SphinxResult(hyp.hypstr if hyp is not None else "")


__all__ = ["SAMPLE_RATE", "PocketSphinx", "SphinxResult"]
