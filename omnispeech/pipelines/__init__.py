"""Pipelines: where components meet (ASR, the codec, TTS with voice cloning)."""

from omnispeech.pipelines.asr import ASR, ASRConfig
from omnispeech.pipelines.asr_prompt import LANGUAGES, Transcription
from omnispeech.pipelines.asr_stream import ASRStream, PartialTranscript
from omnispeech.pipelines.codec import Codec
from omnispeech.pipelines.tts import TTS, TTSOptions
from omnispeech.pipelines.tts_prompt import VoicePrompt

__all__ = [
    "ASR",
    "ASRConfig",
    "ASRStream",
    "LANGUAGES",
    "Codec",
    "PartialTranscript",
    "TTS",
    "TTSOptions",
    "Transcription",
    "VoicePrompt",
]
