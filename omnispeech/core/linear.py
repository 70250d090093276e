"""``nn.Linear`` whose decoding steps read their weights at memory speed on any CPU."""

from __future__ import annotations

import torch
from torch import nn

from omnispeech.kernels import linear


class StepLinear(nn.Linear):
    """``nn.Linear`` (same parameters, same state-dict keys) computed by
    :func:`omnispeech.kernels.linear`: an input of at most a few rows (one streaming step) on
    CPU float32 takes a Numba kernel that reads each weight once, others ``F.linear``.

    A one-row product costs the time to read the weight; MKL's GEMM reads it at 6-10 GB/s for
    2-8 rows on an AMD EPYC, the kernel at 20-30 (``benchmarks/RESULTS.md``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., in_features]`` -> ``[..., out_features]``."""
        return linear(x, self.weight, self.bias)
