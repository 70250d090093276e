"""Pipelines: where components meet (ASR now; TTS later)."""

from omnispeech.pipelines.asr import ASR, ASRConfig
from omnispeech.pipelines.asr_prompt import LANGUAGES, Transcription
from omnispeech.pipelines.asr_stream import ASRStream, PartialTranscript

__all__ = ["ASR", "ASRConfig", "ASRStream", "LANGUAGES", "PartialTranscript", "Transcription"]
