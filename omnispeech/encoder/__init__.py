"""AuT audio encoder (Qwen3-Omni / Qwen3-ASR): log-mel -> 13 tokens/s."""

from omnispeech.encoder.api import AudioEncoder, EncoderOutput
from omnispeech.encoder.config import EncoderConfig
from omnispeech.encoder.model import AuT

__all__ = ["AuT", "AudioEncoder", "EncoderConfig", "EncoderOutput"]
