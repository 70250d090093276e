"""The speech codec's encoder: waveform -> residual codes (Qwen3-TTS 12 Hz tokenizer)."""

from omnispeech.codec.api import CodecEncoder
from omnispeech.codec.config import CodecEncoderConfig

__all__ = ["CodecEncoder", "CodecEncoderConfig"]
