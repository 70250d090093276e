"""Pipelines: where components meet (ASR and the codec now; TTS later)."""

from omnispeech.pipelines.asr import ASR, ASRConfig
from omnispeech.pipelines.asr_prompt import LANGUAGES, Transcription
from omnispeech.pipelines.asr_stream import ASRStream, PartialTranscript
from omnispeech.pipelines.codec import Codec

__all__ = [
    "ASR",
    "ASRConfig",
    "ASRStream",
    "LANGUAGES",
    "Codec",
    "PartialTranscript",
    "Transcription",
]
