"""Shared building blocks: streaming protocol, norms, RoPE, attention, the Qwen3 decoder."""

from omnispeech.core.attention import GQAttention, KVCache
from omnispeech.core.norm import RMSNorm
from omnispeech.core.rope import RotaryEmbedding, apply_rotary
from omnispeech.core.streaming import StreamingModule, StreamingState
from omnispeech.core.transformer import (
    Decoder,
    DecoderCache,
    DecoderConfig,
    DecoderLayer,
    DecoderStack,
    decoder_config_from_released,
)

__all__ = [
    "Decoder",
    "DecoderCache",
    "DecoderConfig",
    "DecoderLayer",
    "DecoderStack",
    "GQAttention",
    "KVCache",
    "RMSNorm",
    "RotaryEmbedding",
    "StreamingModule",
    "StreamingState",
    "apply_rotary",
    "decoder_config_from_released",
]
