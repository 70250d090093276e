"""Weight-only int8 linears for memory-bound decoding.

Generating speech frame by frame multiplies one vector by every weight matrix of the talker
(and 15 times per frame by the code predictor's): the time is the time to read the weights.
Storing them as int8 with one float scale per output row reads a quarter of the float32 bytes.

:class:`Int8Linear` has two paths with the same result up to float rounding: the reference
(dequantize the rows, then ``F.linear``; any device, any float dtype) and ATen's fused CPU
kernel ``_weight_int8pack_mm``, used for bfloat16 / float16 activations on the CPU (it is slower
than plain float32 for float32 activations, so those take the reference path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _fused_available() -> bool:
    return hasattr(torch, "_weight_int8pack_mm")


class Int8Linear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored as int8 rows times a per-row scale.

    Args:
        weight: ``[out, in]`` int8.
        scale: ``[out]`` float, in the activation dtype.
        bias: ``[out]`` or None.
    """

    def __init__(
        self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)
        self.in_features = weight.shape[1]
        self.out_features = weight.shape[0]

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype) -> Int8Linear:
        """Quantize symmetrically per output row: ``scale = max|row| / 127``."""
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        bias = linear.bias.detach().to(dtype) if linear.bias is not None else None
        return cls(q, scale.to(dtype), bias)

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight as floats ``[out, in]`` (what the reference path multiplies by)."""
        return self.weight.to(dtype) * self.scale.to(dtype)[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dtype in (torch.bfloat16, torch.float16)
            and x.dtype == self.scale.dtype
            and _fused_available()
            and not torch.is_grad_enabled()
        ):
            shape = x.shape
            y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]), self.weight, self.scale)
            y = y.reshape(*shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias
        return F.linear(x, self.dequantized(x.dtype), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_linears_(module: nn.Module, dtype: torch.dtype, skip: tuple[str, ...] = ()) -> int:
    """Replace every ``nn.Linear`` under ``module`` by an :class:`Int8Linear`, in place.

    Args:
        module: the model (already in ``dtype``).
        dtype: activation dtype the scales are stored in.
        skip: names of child modules (at any depth) to leave in floating point.

    Returns:
        The number of layers replaced.
    """
    count = 0
    for name, child in list(module.named_children()):
        if name in skip:
            continue
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear.from_linear(child, dtype))
            count += 1
        else:
            count += quantize_linears_(child, dtype, skip)
    return count
