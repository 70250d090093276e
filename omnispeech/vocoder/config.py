"""Configuration of the Code2Wav vocoder and translation from the released config files.

Two released decoders share one architecture (sliding-window transformer, ConvNeXt upsampler,
SnakeBeta + transposed-conv decoder blocks) and differ in three places, captured by ``flavor``:

======================  ===============================  ======================================
                        ``"omni"`` (Qwen3-Omni)          ``"tts12hz"`` (Qwen3-TTS tokenizer)
======================  ===============================  ======================================
code embedding          one table, mean of K codebooks   split RVQ: sum/usage codebooks, 1x1
                                                         projections, causal pre-conv k3
transformer width       ``hidden_size`` = latent width   ``input_proj`` latent -> hidden and
                                                         ``output_proj`` hidden -> latent
transposed conv trim    ``k - stride`` on both ends      ``k - stride`` on the right only
output length           ``1920 * T - 555``               ``1920 * T``
======================  ===============================  ======================================
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from omnispeech.config import FrozenConfig
from omnispeech.errors import CheckpointError

FLAVORS = ("omni", "tts12hz")


@dataclasses.dataclass(frozen=True)
class Code2WavConfig(FrozenConfig):
    """Shape of a Code2Wav vocoder (defaults: the released Qwen3-Omni ``code2wav``).

    ``codes [B, num_quantizers, T]`` at ``sample_rate / prod(rates)`` frames/s (12.5 Hz) become
    ``[B, 1, S]`` samples at ``sample_rate`` (24 kHz).
    """

    flavor: str = "omni"
    codebook_size: int = 2048
    num_quantizers: int = 16
    hidden_size: int = 1024
    num_attention_heads: int = 16
    num_key_value_heads: int = 16
    head_dim: int = 64
    intermediate_size: int = 3072
    num_hidden_layers: int = 8
    sliding_window: int = 72
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    # Width of the conv trunk around the transformer (== hidden_size for "omni").
    latent_dim: int = 1024
    upsampling_ratios: tuple[int, ...] = (2, 2)
    upsample_rates: tuple[int, ...] = (8, 5, 4, 3)
    decoder_dim: int = 1536
    sample_rate: int = 24000
    # "tts12hz" only: width of the dequantised codes, and how many leading codebooks form the
    # separately projected semantic group.
    codebook_dim: int = 512
    num_semantic_quantizers: int = 1

    def __post_init__(self) -> None:
        if self.flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}, got {self.flavor!r}")
        if self.flavor == "omni" and self.latent_dim != self.hidden_size:
            raise ValueError("the omni flavor has no projections: latent_dim must equal hidden")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.decoder_dim % 2 ** len(self.upsample_rates):
            raise ValueError("decoder_dim must halve cleanly through every decoder block")
        if self.sliding_window < 1:
            raise ValueError("sliding_window must be >= 1")
        if self.flavor == "tts12hz" and not 0 < self.num_semantic_quantizers < self.num_quantizers:
            raise ValueError("num_semantic_quantizers must lie in [1, num_quantizers)")

    @property
    def hop_length(self) -> int:
        """Output samples per code frame (1920 = 80 ms at 24 kHz)."""
        return math.prod(self.upsampling_ratios) * math.prod(self.upsample_rates)

    @property
    def frame_rate(self) -> float:
        """Code frames per second (12.5)."""
        return self.sample_rate / self.hop_length

    @property
    def trims_left(self) -> bool:
        """Whether transposed convs drop ``k - stride`` leading samples (the omni flavor)."""
        return self.flavor == "omni"

    @property
    def start_delay(self) -> int:
        """Samples the output lacks at its start (555 for omni, 0 for tts12hz).

        Each decoder block's transposed conv drops ``rate`` leading samples; the later blocks
        upsample that loss further.
        """
        if not self.trims_left:
            return 0
        delay = 0
        for rate in self.upsample_rates:
            delay = delay * rate + rate
        return delay

    def num_samples(self, frames: int) -> int:
        """Output length for ``frames`` code frames (0 frames -> 0 samples)."""
        return max(0, frames * self.hop_length - self.start_delay) if frames else 0

    # -- released configs ----------------------------------------------------------------------
    @classmethod
    def from_omni(cls, cfg: dict[str, Any]) -> Code2WavConfig:
        """From a Qwen3-Omni ``code2wav_config`` dict (missing fields take released values)."""
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        hidden = int(cfg.get("hidden_size", 1024))
        heads = int(cfg.get("num_attention_heads", 16))
        try:
            return cls(
                flavor="omni",
                codebook_size=int(cfg.get("codebook_size", 2048)),
                num_quantizers=int(cfg.get("num_quantizers", 16)),
                hidden_size=hidden,
                num_attention_heads=heads,
                num_key_value_heads=int(cfg.get("num_key_value_heads", heads)),
                head_dim=int(cfg.get("head_dim") or hidden // heads),
                intermediate_size=int(cfg.get("intermediate_size", 3072)),
                num_hidden_layers=int(cfg.get("num_hidden_layers", 8)),
                sliding_window=int(cfg.get("sliding_window", 72)),
                rope_theta=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
                rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-5)),
                latent_dim=hidden,
                upsampling_ratios=tuple(cfg.get("upsampling_ratios", (2, 2))),
                upsample_rates=tuple(cfg.get("upsample_rates", (8, 5, 4, 3))),
                decoder_dim=int(cfg.get("decoder_dim", 1536)),
            )
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"unusable Qwen3-Omni code2wav config: {exc}") from exc

    @classmethod
    def from_tts_tokenizer(cls, cfg: dict[str, Any]) -> Code2WavConfig:
        """From a Qwen3-TTS-Tokenizer-12Hz ``config.json`` (its ``decoder_config`` part).

        The file also carries ``semantic_codebook_size`` (4096), which the decoder never reads:
        every codebook has ``codebook_size`` rows.
        """
        dec = cfg.get("decoder_config") or {}
        hidden = int(dec.get("hidden_size", 1024))
        heads = int(dec.get("num_attention_heads", 16))
        rope = dec.get("rope_scaling") or {}
        try:
            return cls(
                flavor="tts12hz",
                codebook_size=int(dec.get("codebook_size", 2048)),
                num_quantizers=int(dec.get("num_quantizers", 16)),
                hidden_size=hidden,
                num_attention_heads=heads,
                num_key_value_heads=int(dec.get("num_key_value_heads", heads)),
                head_dim=int(dec.get("head_dim") or hidden // heads),
                intermediate_size=int(dec.get("intermediate_size", 3072)),
                num_hidden_layers=int(dec.get("num_hidden_layers", 8)),
                sliding_window=int(dec.get("sliding_window", 72)),
                rope_theta=float(rope.get("rope_theta", dec.get("rope_theta", 10000.0))),
                rms_norm_eps=float(dec.get("rms_norm_eps", 1e-5)),
                latent_dim=int(dec.get("latent_dim", 1024)),
                upsampling_ratios=tuple(dec.get("upsampling_ratios", (2, 2))),
                upsample_rates=tuple(dec.get("upsample_rates", (8, 5, 4, 3))),
                decoder_dim=int(dec.get("decoder_dim", 1536)),
                sample_rate=int(cfg.get("output_sample_rate", 24000)),
                codebook_dim=int(dec.get("codebook_dim", 512)),
                num_semantic_quantizers=int(dec.get("num_semantic_quantizers", 1)),
            )
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"unusable Qwen3-TTS tokenizer decoder config: {exc}") from exc
