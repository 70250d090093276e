"""What the demo's buttons do, as plain Python over the public API (no Gradio objects).

Every handler borrows a model replica from the pool for the time it runs, so the page's
concurrency limit is also the number of models working at once. Errors a user can cause are
raised as :class:`~omnispeech.errors.OmnispeechError` with one readable line; the page turns
them into its error message.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from omnispeech.apps.models import Models, ReplicaPool
from omnispeech.apps.voices import VoiceStore, check_name
from omnispeech.errors import InputError, OmnispeechError

if TYPE_CHECKING:
    from omnispeech.pipelines import ASRStream, VoicePrompt

NO_VOICE = "(the clip above)"
ASR_RATE = 16_000
# The first chunk goes out alone (the listener hears speech after one frame); later chunks are
# gathered to about this many seconds, because each streamed piece costs the page an encode.
GATHER_SECONDS = 0.5
# Reference clips are transcribed for the transcript box only up to the length TTS accepts.
MAX_CLIP_SECONDS = 30.0


@dataclasses.dataclass
class LiveSession:
    """A microphone transcription in progress: the borrowed replica and its stream."""

    replica: Models
    stream: ASRStream
    text: str = ""


class Handlers:
    """The demo's actions.

    Args:
        pool: replicas of the models (TTS and/or ASR).
        voices: the saved voices.
        max_chars: longest text to speak.
        max_speech_seconds: most speech generated per request (the rest is not generated).
        wait_seconds: how long a request waits for a free worker before giving up.
    """

    def __init__(
        self,
        pool: ReplicaPool,
        voices: VoiceStore,
        max_chars: int,
        max_speech_seconds: float = 300.0,
        wait_seconds: float = 600.0,
    ) -> None:
        self.pool = pool
        self.voices = voices
        self.max_chars = max_chars
        self.max_speech_seconds = max_speech_seconds
        self.wait_seconds = wait_seconds
        first = pool.acquire()
        pool.release(first)
        self.has_tts = first.tts is not None
        self.has_asr = first.asr is not None
        self.sample_rate = first.tts.sample_rate if first.tts is not None else 24_000
        self.languages = first.tts.languages if first.tts is not None else ["auto"]

    def voice_choices(self) -> list[str]:
        """The voice menu: the uploaded clip, then the saved voices."""
        return [NO_VOICE, *self.voices.names()]

    # -- text to speech -----------------------------------------------------------------------
    def _voice(
        self, models: Models, clip: str | None, ref_text: str, saved: str | None
    ) -> VoicePrompt | None:
        if saved and saved != NO_VOICE:
            return self.voices.load(saved)
        if not clip:
            return None  # the model's own voice
        return models.tts.voice(clip, ref_text.strip() or None)

    def speak(  # noqa: PLR0913 - one parameter per field of the page
        self,
        clip: str | None,
        ref_text: str,
        saved: str | None,
        text: str,
        language: str,
        speed: float,
        seed: float | None,
    ) -> Iterator[tuple[np.ndarray, str]]:
        """Speech as it is generated: ``(int16 samples [n] at 24 kHz, status line)`` pieces.

        Raises:
            InputError: no text, too much text, no TTS model; and the model's own errors
                (clip too short, long or silent, unknown language).
        """
        if not self.has_tts:
            raise InputError("this demo has no TTS model: start it with --tts-model FOLDER")
        text = (text or "").strip()
        if not text:
            raise InputError("type the text to speak")
        if len(text) > self.max_chars:
            raise InputError(f"the text is {len(text)} characters; the limit is {self.max_chars}")
        # Negative or empty: a random seed (the status line tells which one was used).
        seed_value = None if seed is None or math.isnan(seed) or seed < 0 else int(seed)
        with self.pool.borrow(self.wait_seconds) as models:
            voice = self._voice(models, clip, ref_text or "", saved)
            chunks = models.tts.stream(
                text, voice, language=language or "auto", seed=seed_value, speed=float(speed)
            )
            rate, total, pending = models.tts.sample_rate, 0, []
            limit = int(self.max_speech_seconds * rate)
            try:
                for chunk in chunks:
                    chunk = chunk[: limit - total]
                    total += len(chunk)
                    pending.append(chunk)
                    if total == len(chunk) or sum(map(len, pending)) >= GATHER_SECONDS * rate:
                        yield _int16(pending), f"{total / rate:.2f} s so far..."
                        pending = []
                    if total >= limit:
                        break
            finally:
                chunks.close()
            status = f"{total / rate:.2f} s of speech, seed {models.tts.last_seed}"
            yield _int16(pending), status

    def save_voice(self, clip: str | None, ref_text: str, name: str) -> str:
        """Save the clip's voice as ``name``; returns a status line."""
        if not self.has_tts:
            raise InputError("this demo has no TTS model: start it with --tts-model FOLDER")
        name = check_name((name or "").strip())
        if not clip:
            raise InputError("upload or record a reference clip first")
        text = (ref_text or "").strip() or None
        with self.pool.borrow(self.wait_seconds) as models:
            voice = models.tts.voice(clip, text)
        self.voices.save(name, voice, text)
        how = "in context (with its transcript)" if voice.in_context else "speaker vector only"
        return f"saved voice {name!r}, {how}"

    # -- speech recognition -------------------------------------------------------------------
    def transcript_of_clip(self, clip: str | None) -> str:
        """The transcript box for a new reference clip: what ASR hears in it, or empty (the
        previous clip's transcript would be wrong for this one)."""
        if not clip or not self.has_asr:
            return ""
        from omnispeech.audio import load_audio

        wav = load_audio(clip, ASR_RATE)[: int(MAX_CLIP_SECONDS * ASR_RATE)]
        with self.pool.borrow(self.wait_seconds) as models:
            return models.asr.transcribe(wav, ASR_RATE).text

    def transcribe(self, path: str | None, language: str) -> str:
        """A file's transcript (long files are cut into segments)."""
        self._need_asr()
        if not path:
            raise InputError("upload or record audio to transcribe")
        lang = None if language in (None, "", "auto") else language
        with self.pool.borrow(self.wait_seconds) as models:
            return models.asr.transcribe_file(Path(path), language=lang).text

    def live_push(
        self, session: LiveSession | None, piece: tuple[int, np.ndarray] | None, language: str
    ) -> tuple[LiveSession | None, str]:
        """Feed a microphone piece ``(rate, samples)``; returns the session and the text."""
        self._need_asr()
        if piece is None:
            return session, session.text if session else ""
        from omnispeech.audio import prepare_audio

        rate, samples = piece
        if session is None:
            replica = self.pool.acquire(self.wait_seconds)
            try:
                lang = None if language in (None, "", "auto") else language
                stream = replica.asr.stream(lang, unfixed_tokens=None).__enter__()
            except BaseException:
                self.pool.release(replica)
                raise
            session = LiveSession(replica, stream)
        if np.asarray(samples).size:
            update = session.stream.push(prepare_audio(samples, int(rate), ASR_RATE))
            if update is not None:
                session.text = update.text
        return session, session.text

    def live_finish(self, session: LiveSession | None) -> tuple[None, str]:
        """End the microphone stream: the final text, and the replica goes back."""
        if session is None:
            return None, ""
        try:
            text = session.stream.finish().text
        except OmnispeechError:
            text = session.text  # e.g. too little audio to encode
        finally:
            self.live_drop(session)
        return None, text

    def live_drop(self, session: LiveSession | None) -> None:
        """Give back a session's replica (the page was closed while recording)."""
        if session is None or session.replica is None:
            return
        session.stream.__exit__(None, None, None)
        self.pool.release(session.replica)
        session.replica = None

    def _need_asr(self) -> None:
        if not self.has_asr:
            raise InputError("this demo has no ASR model: start it with --asr-model FOLDER")


def _int16(pieces: list[np.ndarray]) -> np.ndarray:
    """Float pieces -> one int16 array (what the audio player is given)."""
    if not pieces:
        return np.zeros(0, dtype=np.int16)
    x = np.clip(np.concatenate(pieces), -1.0, 1.0)
    return np.round(x * 32767.0).astype(np.int16)
