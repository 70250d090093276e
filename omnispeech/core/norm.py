"""Normalisation layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dimension.

    The statistics are taken in float32 whatever the input dtype, the result is cast back to
    the input dtype and only then multiplied by the weight: the order the Qwen checkpoints were
    trained with (it matters in bf16 and for bit-exact float64 parity).

    Args:
        dim: size of the normalised (last) dimension.
        eps: added to the mean square before the square root.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if dtype == torch.float32:
            # ATen's fused op: the same arithmetic in one call, which a decoding step makes
            # hundreds of times per token.
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        h = x.float() if dtype in (torch.float16, torch.bfloat16) else x
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)
