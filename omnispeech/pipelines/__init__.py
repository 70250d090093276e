"""Pipelines: where components meet (ASR now; TTS later)."""

from omnispeech.pipelines.asr import ASR, ASRConfig
from omnispeech.pipelines.asr_prompt import LANGUAGES, Transcription

__all__ = ["ASR", "ASRConfig", "LANGUAGES", "Transcription"]
