"""Weight-only int8 and int4 linears for memory-bound decoding.

Generating speech frame by frame (or text token by token) multiplies one vector by every weight
matrix of the decoder: the time is the time to read the weights. Storing them as int8 with one
float scale per output row reads a quarter of the float32 bytes; as int4 with a scale and an
offset per group of input columns, an eighth (plus 8 bytes per group).

:class:`Int8Linear` has two paths with the same result up to float rounding: the reference
(dequantize the rows, then ``F.linear``; any device, any float dtype) and ATen's fused CPU
kernel ``_weight_int8pack_mm``, used for bfloat16 / float16 activations on the CPU (it is slower
than plain float32 for float32 activations, so those take the reference path) and up to
``FUSED_MAX_ROWS`` input rows (a prompt's prefill takes the reference path: faster there).

:class:`Int4Linear` likewise: the reference unpacks the nibbles and dequantizes group by group;
ATen's CPU int4 kernel (``_weight_int4pack_mm_for_cpu``, float32 / bfloat16 / float16
activations) is used whenever the layer's shape fits it (see :func:`int4_kernel_fits`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _fused_available() -> bool:
    return hasattr(torch, "_weight_int8pack_mm")


# ATen's fused int8 CPU kernel is a matrix-vector kernel: each input row costs about what one
# row costs alone. At 1024 x 3072 (measured) 150 prompt positions took 15.8 ms, against 3.7 ms
# to dequantize the weight and multiply in bfloat16; the two break even near 32 rows. Beyond
# that the weight is dequantized; decoding steps (one row per stream) stay fused.
FUSED_MAX_ROWS = 32


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
        return cls.from_weight(linear.weight, linear.bias, dtype)

    @classmethod
    def from_weight(
        cls, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype
    ) -> Int8Linear:
        """Quantize a ``[out, in]`` weight (e.g. a tied embedding table used as the head)."""
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        bias = bias.detach().to(dtype) if bias is not None else None
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
            and x.numel() <= FUSED_MAX_ROWS * self.in_features
        ):
            shape = x.shape
            y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]), self.weight, self.scale)
            y = y.reshape(*shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias
        return F.linear(x, self.dequantized(x.dtype), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


# ATen's CPU int4 kernel accepts these group sizes only; the reference path takes any even one.
INT4_GROUP_SIZES = (32, 64, 128, 256)
# A middle choice: per group of 64 columns the scale and offset add 0.5 bit per weight in
# 16-bit activations (1 bit in float32), and the rounding error stays below that of 128.
DEFAULT_GROUP_SIZE = 64
# The kernel stores the output rows in tiles of 16.
_KERNEL_ROW_TILE = 16


def _int4_kernel_available() -> bool:
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and hasattr(
        torch.ops.aten, "_convert_weight_to_int4pack_for_cpu"
    )


def int4_kernel_fits(out_features: int, in_features: int, group_size: int) -> bool:
    """Whether ATen's CPU int4 kernel can hold a ``[out, in]`` weight in groups of
    ``group_size`` (rows in tiles of 16, a supported group size that divides ``in``)."""
    return (
        out_features % _KERNEL_ROW_TILE == 0
        and group_size in INT4_GROUP_SIZES
        and in_features % group_size == 0
    )


# Shrink factors tried for each group's range (see quantize_int4): clipping the few extreme
# weights of a group buys a finer grid for all others.
_RANGE_SHRINK = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75)


def quantize_int4(
    weight: torch.Tensor, group_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric 4-bit quantization of each group of ``group_size`` input columns.

    Each group maps a range ``[low, high]`` onto the 16 levels: ``w ~ (q - 8) * scale + zero``
    with ``scale = (high - low) / 15`` and ``zero = low + 8 * scale``. The ``- 8`` centring is
    the convention of ATen's int4 kernel, so both paths read the same three tensors. The range
    is the group's ``[min, max]`` shrunk towards its centre by the factor of
    ``_RANGE_SHRINK`` that gives the smallest squared error: with 16 levels a step is about a
    quarter of a standard deviation, and the two extremes alone should not set it.

    Args:
        weight: ``[out, in]`` floats, ``in`` a multiple of ``group_size``.
        group_size: input columns per group.

    Returns:
        ``(q, scale, zero)``: ``q`` ``[out, in]`` uint8 in 0..15; ``scale`` and ``zero``
        ``[out, in / group_size]`` float32.
    """
    N, K = weight.shape
    if K % group_size:
        raise ValueError(f"{K} input columns are not a multiple of the group size {group_size}")
    w = weight.detach().float().reshape(N, K // group_size, group_size)
    low, high = w.amin(dim=-1), w.amax(dim=-1)
    centre, half = (low + high) / 2, (high - low) / 2
    best_err = best_low = best_scale = None
    for shrink in _RANGE_SHRINK:
        lo = centre - shrink * half
        # A constant group (e.g. zero padding) gets a tiny scale and is exact: every code
        # is 0 and the offset is the value.
        scale = (2 * shrink * half / 15).clamp_min(1e-12)
        q = torch.round((w - lo[..., None]) / scale[..., None]).clamp_(0, 15)
        err = (q * scale[..., None] + lo[..., None] - w).square().sum(dim=-1)
        if best_err is None:
            best_err, best_low, best_scale = err, lo, scale
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_low = torch.where(better, lo, best_low)
            best_scale = torch.where(better, scale, best_scale)
    assert best_low is not None and best_scale is not None
    q = torch.round((w - best_low[..., None]) / best_scale[..., None]).clamp_(0, 15)
    return q.to(torch.uint8).reshape(N, K), best_scale, best_low + 8 * best_scale


def dequantize_int4(
    q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int
) -> torch.Tensor:
    """Inverse of :func:`quantize_int4`: ``[out, in]`` float32 weights."""
    N, K = q.shape
    g = q.reshape(N, K // group_size, group_size).float() - 8
    return (g * scale[..., None] + zero[..., None]).reshape(N, K)


class Int4Linear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored as 4-bit codes, a scale and an offset per group.

    ``weight`` holds two codes per byte, in one of two layouts chosen at quantization: ATen's
    CPU int4 kernel layout (``kernel_layout``; opaque, made by
    ``_convert_weight_to_int4pack_for_cpu``) or plain nibbles (column ``2i`` in the low half of
    byte ``i``, ``2i + 1`` in the high half) for shapes or devices the kernel does not take.

    Args:
        weight: ``[out, in / 2]`` uint8.
        scale_zeros: ``[in / group_size, out, 2]`` (scale, offset) in the activation dtype.
        bias: ``[out]`` or None.
        group_size: input columns per group.
        kernel_layout: whether ``weight`` is in the kernel's layout.
    """

    def __init__(  # noqa: PLR0913 - the stored tensors and how to read them
        self,
        weight: torch.Tensor,
        scale_zeros: torch.Tensor,
        bias: torch.Tensor | None,
        group_size: int,
        kernel_layout: bool,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("scale_zeros", scale_zeros)
        self.register_buffer("bias", bias)
        self.group_size = group_size
        self.kernel_layout = kernel_layout
        self.in_features = weight.shape[1] * 2
        self.out_features = weight.shape[0]

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        dtype: torch.dtype,
        group_size: int = DEFAULT_GROUP_SIZE,
        use_kernel: bool = True,
    ) -> Int4Linear:
        """Quantize ``linear`` (see :func:`quantize_int4`).

        Args:
            linear: the float layer (its input width must be even).
            dtype: activation dtype the scales and offsets are stored in.
            group_size: columns per group; when it does not divide the input width, the
                largest common divisor is used (such layers take the reference path).
            use_kernel: store the kernel's layout when the shape, device and this torch allow.
        """
        w = linear.weight.detach()
        N, K = w.shape
        if K % 2:
            raise ValueError(f"int4 packs pairs of columns; {K} input columns is odd")
        group = math.gcd(K, group_size)
        q, scale, zero = quantize_int4(w, group)
        scale_zeros = torch.stack((scale.t(), zero.t()), dim=-1).contiguous().to(dtype)
        kernel = (
            use_kernel
            and w.device.type == "cpu"
            and _int4_kernel_available()
            and int4_kernel_fits(N, K, group)
        )
        if kernel:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)
        else:
            packed = q[:, 0::2] | (q[:, 1::2] << 4)
        bias = linear.bias.detach().to(dtype) if linear.bias is not None else None
        return cls(packed, scale_zeros, bias, group, kernel)

    def _kernel(self, x: torch.Tensor) -> torch.Tensor:
        """ATen's int4 matmul: ``x`` ``[M, in]`` -> ``[M, out]`` (scales cast to ``x``)."""
        return torch.ops.aten._weight_int4pack_mm_for_cpu(
            x, self.weight, self.group_size, self.scale_zeros.to(x.dtype)
        )

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight as floats ``[out, in]``.

        The kernel layout is opaque, so it is read back through the kernel itself: an identity
        input in float32 returns each weight exactly (every sum adds zeros to one term).
        """
        if self.kernel_layout:
            eye = torch.eye(self.in_features, device=self.weight.device)
            w = self._kernel(eye).t()
        else:
            q = torch.stack((self.weight & 15, self.weight >> 4), dim=-1)
            q = q.reshape(self.out_features, self.in_features)
            sz = self.scale_zeros.float()
            w = dequantize_int4(q, sz[..., 0].t(), sz[..., 1].t(), self.group_size)
        return w.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_layout and x.device.type == "cpu" and x.dtype == self.scale_zeros.dtype:
            shape = x.shape
            y = self._kernel(x.reshape(-1, shape[-1]).contiguous())
            y = y.reshape(*shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized(x.dtype), bias)

    def extra_repr(self) -> str:
        layout = "kernel" if self.kernel_layout else "nibbles"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, int4, "
            f"group_size={self.group_size}, layout={layout}"
        )


def quantize_linears_(  # noqa: PLR0913 - the two formats' settings
    module: nn.Module,
    dtype: torch.dtype,
    skip: tuple[str, ...] = (),
    bits: int = 8,
    group_size: int = DEFAULT_GROUP_SIZE,
) -> int:
    """Replace every ``nn.Linear`` under ``module`` by a quantized one, in place.

    Args:
        module: the model (already in ``dtype``).
        dtype: activation dtype the scales are stored in.
        skip: names of child modules (at any depth) to leave in floating point.
        bits: 8 (:class:`Int8Linear`, per-row scales) or 4 (:class:`Int4Linear`).
        group_size: input columns per scale for 4 bits.

    Returns:
        The number of layers replaced.
    """
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    count = 0
    for name, child in list(module.named_children()):
        if name in skip:
            continue
        if isinstance(child, nn.Linear):
            setattr(module, name, quantize_linear(child, dtype, bits, group_size))
            count += 1
        else:
            count += quantize_linears_(child, dtype, skip, bits, group_size)
    return count


def quantize_linear(
    linear: nn.Linear, dtype: torch.dtype, bits: int = 8, group_size: int = DEFAULT_GROUP_SIZE
) -> Int8Linear | Int4Linear:
    """One layer in ``bits`` (8: per-row scales; 4: groups of ``group_size`` columns)."""
    if bits == 4:
        return Int4Linear.from_linear(linear, dtype, group_size)
    return Int8Linear.from_linear(linear, dtype)
