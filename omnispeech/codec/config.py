"""Configuration of the codec encoder (the Qwen3-TTS 12 Hz tokenizer's Mimi-style half)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from omnispeech.config import FrozenConfig
from omnispeech.errors import CheckpointError


@dataclasses.dataclass(frozen=True)
class CodecEncoderConfig(FrozenConfig):
    """Shape of the codec encoder (defaults: the released Qwen3-TTS-Tokenizer-12Hz).

    Audio at ``sample_rate`` -> a causal SEANet (strides ``reversed(ratios)``, channels doubling
    from ``num_filters``) -> a causal transformer -> a stride-2 conv -> ``num_valid_quantizers``
    codes per frame from a split residual quantizer (1 semantic + acoustic codebooks).
    """

    sample_rate: int = 24000
    num_filters: int = 64
    kernel_size: int = 7
    last_kernel_size: int = 3
    residual_kernel_size: int = 3
    dilation_growth_rate: int = 2
    num_residual_layers: int = 1
    compress: int = 2
    ratios: tuple[int, ...] = (8, 6, 5, 4)
    hidden_size: int = 512
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    num_key_value_heads: int = 8
    head_dim: int = 64
    intermediate_size: int = 2048
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    # None: every frame attends to all earlier ones, as the reference encoder runs (its
    # configured sliding window only applies to a flash-attention path).
    attention_window: int | None = None
    codebook_size: int = 2048
    codebook_dim: int = 256
    num_quantizers: int = 32
    num_semantic_quantizers: int = 1
    num_valid_quantizers: int = 16
    frame_rate: float = 12.5

    def __post_init__(self) -> None:
        if not 0 < self.num_semantic_quantizers < self.num_valid_quantizers <= self.num_quantizers:
            raise ValueError("need 0 < semantic quantizers < valid quantizers <= quantizers")
        _ = self.downsample_stride  # validates that the frame rate divides the SEANet rate

    @property
    def seanet_hop(self) -> int:
        """Samples per SEANet frame (960 = 25 Hz at 24 kHz)."""
        return math.prod(self.ratios)

    @property
    def downsample_stride(self) -> int:
        """Stride of the conv from the SEANet rate to the code frame rate (2)."""
        stride = self.sample_rate / self.seanet_hop / self.frame_rate
        if stride != int(stride) or stride < 1:
            raise ValueError("frame_rate must divide the SEANet frame rate")
        return int(stride)

    @property
    def hop_length(self) -> int:
        """Samples per code frame (1920)."""
        return self.seanet_hop * self.downsample_stride

    def num_frames(self, samples: int) -> int:
        """Code frames for ``samples`` samples: ``ceil(samples / hop_length)``."""
        return -(-samples // self.hop_length)

    @classmethod
    def from_tts_tokenizer(cls, cfg: dict[str, Any]) -> CodecEncoderConfig:
        """From a Qwen3-TTS-Tokenizer-12Hz ``config.json`` (its ``encoder_config`` part)."""
        enc = cfg.get("encoder_config") or {}
        if enc.get("use_conv_shortcut") or not enc.get("use_causal_conv", True):
            raise CheckpointError(
                "only causal SEANet encoders without conv shortcuts are supported"
            )
        if enc.get("pad_mode", "constant") != "constant":
            raise CheckpointError(f"unsupported SEANet pad_mode {enc.get('pad_mode')!r}")
        heads = int(enc.get("num_attention_heads", 8))
        hidden = int(enc.get("hidden_size", 512))
        try:
            return cls(
                sample_rate=int(cfg.get("input_sample_rate", enc.get("sampling_rate", 24000))),
                num_filters=int(enc.get("num_filters", 64)),
                kernel_size=int(enc.get("kernel_size", 7)),
                last_kernel_size=int(enc.get("last_kernel_size", 3)),
                residual_kernel_size=int(enc.get("residual_kernel_size", 3)),
                dilation_growth_rate=int(enc.get("dilation_growth_rate", 2)),
                num_residual_layers=int(enc.get("num_residual_layers", 1)),
                compress=int(enc.get("compress", 2)),
                ratios=tuple(enc.get("upsampling_ratios", (8, 6, 5, 4))),
                hidden_size=hidden,
                num_hidden_layers=int(enc.get("num_hidden_layers", 8)),
                num_attention_heads=heads,
                num_key_value_heads=int(enc.get("num_key_value_heads", heads)),
                head_dim=int(enc.get("head_dim") or hidden // heads),
                intermediate_size=int(enc.get("intermediate_size", 2048)),
                norm_eps=float(enc.get("norm_eps", 1e-5)),
                rope_theta=float(enc.get("rope_theta", 10000.0)),
                codebook_size=int(enc.get("codebook_size", 2048)),
                codebook_dim=int(enc.get("vector_quantization_hidden_dimension", 256)),
                num_quantizers=int(enc.get("num_quantizers", 32)),
                num_semantic_quantizers=int(enc.get("num_semantic_quantizers", 1)),
                num_valid_quantizers=int(cfg.get("encoder_valid_num_quantizers", 16)),
                frame_rate=float(enc.get("frame_rate", enc.get("_frame_rate", 12.5))),
            )
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"unusable Qwen3-TTS tokenizer encoder config: {exc}") from exc
