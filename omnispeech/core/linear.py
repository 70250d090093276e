"""``nn.Linear`` whose decoding steps read their weights at memory speed on any CPU."""

from __future__ import annotations

import torch
from torch import nn

from omnispeech.core.quant import grouped_int4
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


def project(x: torch.Tensor, *layers: nn.Module) -> tuple[torch.Tensor, ...]:
    """``layer(x)`` for each of ``layers`` that read the same input (an attention layer's q, k
    and v projections; an MLP's gate and up).

    Two or three int4 layers in our kernel's layout (:func:`omnispeech.core.quant.grouped_int4`)
    share one kernel launch: a decoding step launches hundreds of small products per token, and
    each launch costs about what a small product does. Any other layers run one by one. The
    results are the same either way.
    """
    grouped = grouped_int4(x, layers)
    return grouped if grouped is not None else tuple(layer(x) for layer in layers)
