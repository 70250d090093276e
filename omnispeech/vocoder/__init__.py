"""Code2Wav: the streaming causal vocoder of Qwen3-Omni and of the Qwen3-TTS 12 Hz tokenizer."""

from omnispeech.vocoder.config import Code2WavConfig
from omnispeech.vocoder.graph import GraphStreamer
from omnispeech.vocoder.model import AudioChunk, Code2Wav, check_codes

__all__ = ["AudioChunk", "Code2Wav", "Code2WavConfig", "GraphStreamer", "check_codes"]
