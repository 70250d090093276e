"""Configuration of the AuT audio encoder and translation from the released config files."""

from __future__ import annotations

import dataclasses
from typing import Any

from omnispeech.config import FrozenConfig
from omnispeech.errors import CheckpointError


@dataclasses.dataclass(frozen=True)
class EncoderConfig(FrozenConfig):
    """Shape of the AuT encoder (defaults: Qwen3-ASR-0.6B).

    The encoder cuts the log-mel into chunks of ``2 * n_window`` frames (1 s), downsamples each
    chunk 8x in time with three stride-2 convs (13 tokens per chunk), and attends inside windows
    of ``n_window_infer`` frames (8 s = 104 tokens).
    """

    num_mel_bins: int = 128
    d_model: int = 896
    encoder_layers: int = 18
    encoder_attention_heads: int = 14
    encoder_ffn_dim: int = 3584
    # Width after the two-layer projection (the LLM's hidden size); None = no projection,
    # as in transformers' standalone Qwen3-ASR encoder whose projector lives outside it.
    output_dim: int | None = 1024
    n_window: int = 50
    n_window_infer: int = 800
    downsample_hidden_size: int = 480
    max_source_positions: int = 1500
    # Qwen3-Omni pads a partial chunk only to the longest chunk of the batch when no audio in
    # the batch reaches a full chunk; Qwen3-ASR always pads to the full chunk. Kept so that
    # each checkpoint behaves exactly as its reference.
    pad_short_batches_to_longest: bool = False

    def __post_init__(self) -> None:
        if self.d_model % self.encoder_attention_heads:
            raise ValueError("d_model must be a multiple of encoder_attention_heads")
        if self.n_window_infer % (2 * self.n_window):
            raise ValueError("n_window_infer must be a multiple of 2 * n_window")

    @property
    def chunk_frames(self) -> int:
        """Mel frames per conv chunk (100 = 1 s at 100 frames/s)."""
        return 2 * self.n_window

    @property
    def tokens_per_chunk(self) -> int:
        """Tokens a full chunk yields: three stride-2 convs with padding 1 (100 -> 13)."""
        n = self.chunk_frames
        for _ in range(3):
            n = (n - 1) // 2 + 1
        return n

    @property
    def chunks_per_window(self) -> int:
        """Chunks in one attention window (8)."""
        return self.n_window_infer // self.chunk_frames

    @property
    def freq_bins_after_conv(self) -> int:
        n = self.num_mel_bins
        for _ in range(3):
            n = (n - 1) // 2 + 1
        return n

    def num_tokens(self, num_frames: int) -> int:
        """Encoder tokens for ``num_frames`` valid mel frames: 13 per full chunk, then
        ``ceil(r / 8)`` for a partial chunk of ``r`` frames."""
        full, rest = divmod(num_frames, self.chunk_frames)
        return full * self.tokens_per_chunk + (rest + 7) // 8

    @classmethod
    def from_released(cls, audio_config: dict[str, Any], **overrides: Any) -> EncoderConfig:
        """Translate a released ``audio_config`` dict (Qwen3-Omni or Qwen3-ASR, either
        layout) into an :class:`EncoderConfig`; unknown fields are ignored here on purpose
        (dropout, initialisers and other training-only settings)."""
        try:
            fields: dict[str, Any] = {
                "num_mel_bins": audio_config.get("num_mel_bins", 128),
                "d_model": audio_config["d_model"],
                "encoder_layers": audio_config["encoder_layers"],
                "encoder_attention_heads": audio_config["encoder_attention_heads"],
                "encoder_ffn_dim": audio_config["encoder_ffn_dim"],
                "output_dim": audio_config.get("output_dim"),
                "n_window": audio_config.get("n_window", 50),
                "n_window_infer": audio_config.get("n_window_infer", 800),
                "downsample_hidden_size": audio_config.get("downsample_hidden_size", 480),
                "max_source_positions": audio_config.get(
                    "max_source_positions", audio_config.get("max_position_embeddings", 1500)
                ),
            }
        except KeyError as exc:
            raise CheckpointError(f"audio config lacks the field {exc}") from exc
        act = audio_config.get("activation_function", "gelu")
        if act != "gelu":
            raise CheckpointError(f"unsupported audio encoder activation {act!r} (only 'gelu')")
        fields.update(overrides)
        return cls(**fields)
