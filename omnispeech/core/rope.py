"""Rotary position embeddings (rotate-half layout, as in the Qwen text models).

The Qwen3-ASR decoder and the Qwen3-Omni talker declare multimodal RoPE, but for speech and text
all three position streams are equal, which makes it exactly plain 1-D RoPE.
"""

from __future__ import annotations

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    """cos/sin tables for given positions.

    Frequencies are ``theta ** (-2k / head_dim)`` for ``k < head_dim / 2``; the angle vector is
    duplicated (``cat(a, a)``) and applied with :func:`apply_rotary`. Tables are computed in
    float32 and cast to the activation dtype, as the released models do.

    Args:
        head_dim: per-head size (even).
        theta: RoPE base.
    """

    def __init__(self, head_dim: int, theta: float = 1_000_000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"head_dim must be even, got {head_dim}")
        self.head_dim = head_dim
        self.theta = theta
        # Derived, so not stored in checkpoints; created on the CPU explicitly so that a model
        # built on the meta device still has real frequencies.
        inv_freq = 1.0 / (
            theta
            ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device="cpu").float() / head_dim)
        )
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(
        self, positions: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables for ``positions`` ``[B, T]`` (int) -> ``(cos, sin)`` each ``[B, T, head_dim]``."""
        angles = positions.to(torch.float32)[..., None] * self.inv_freq.to(positions.device)
        emb = torch.cat((angles, angles), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``[B, H, T, D]`` by tables ``[B, T, D]`` (rotate-half convention)."""
    cos = cos[:, None]
    sin = sin[:, None]
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
