"""Weight-only int8 and int4 linears for memory-bound decoding.

Generating speech frame by frame (or text token by token) multiplies one vector by every weight
matrix of the decoder: the time is the time to read the weights. Storing them as int8 with one
float scale per output row reads a quarter of the float32 bytes; as int4 with a scale and an
offset per group of input columns, an eighth (plus 8 bytes per group).

:class:`Int8Linear` has three paths with the same result up to rounding: on x86 CPUs with AVX2,
for layers whose input width is a multiple of 64, our kernel (:mod:`omnispeech.kernels.numba_int8`:
activations rounded to int8 per group of 64, integer products) for single rows of 16-bit
activations and up to ``FUSED_MAX_ROWS`` rows of float32; else ATen's fused CPU kernel
``_weight_int8pack_mm`` for bfloat16 / float16 activations and up to ``FUSED_MAX_ROWS`` rows;
else the reference (dequantize the rows, then ``F.linear``; any device, any float dtype, and a
prompt's prefill, where it is faster). ``OMNISPEECH_KERNELS=reference`` (see
:mod:`omnispeech.kernels`) turns our kernels off.

:class:`Int4Linear` likewise: the reference unpacks the nibbles and dequantizes group by group.
On x86 CPUs with AVX2 and groups of 64 columns, our kernel (:mod:`omnispeech.kernels.numba_int4`:
integer products with activations rounded to int8 per group) serves any number of rows in any
activation dtype; otherwise ATen's CPU int4 kernel (``_weight_int4pack_mm_for_cpu``) is used
whenever the layer's shape fits it (see :func:`int4_kernel_fits`).
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.kernels.dispatch import requested_backend


def _fused_available() -> bool:
    return hasattr(torch, "_weight_int8pack_mm")


# ATen's fused int8 CPU kernel is a matrix-vector kernel: each input row costs about what one
# row costs alone. At 1024 x 3072 (measured) 150 prompt positions took 15.8 ms, against 3.7 ms
# to dequantize the weight and multiply in bfloat16; the two break even near 32 rows. Beyond
# that the weight is dequantized; decoding steps (one row per stream) stay fused.
FUSED_MAX_ROWS = 32


# Our kernels' group width (their modules' GROUP; repeated so quantizing needs no Numba
# import): activations are rounded to int8 per group of this many columns.
BLOCKS_GROUP = 64


def _our_kernel(name: str) -> ModuleType | None:
    """One of our Numba kernel modules (``"numba_int4"``, ``"numba_int8"``) when it can run
    here (x86 with AVX2, Numba importable, not a forked child, kernels not switched to the
    reference), else None."""
    if requested_backend() == "reference":
        return None
    module = _our_modules.get(name)
    if module is None:
        try:
            module = importlib.import_module(f"omnispeech.kernels.{name}")
        # Importing compiles the kernel: any failure means it cannot serve this process.
        except Exception:
            module = False
        _our_modules[name] = module
    return module if module and module.usable() else None


# Each kernel module once imported, or False once its import failed (asked at every step).
_our_modules: dict[str, ModuleType | bool] = {}


def blocks_kernel() -> ModuleType | None:
    """Our int4 kernel (:mod:`omnispeech.kernels.numba_int4`) when it can run here."""
    return _our_kernel("numba_int4")


def int8_kernel() -> ModuleType | None:
    """Our int8 kernel (:mod:`omnispeech.kernels.numba_int8`) when it can run here."""
    return _our_kernel("numba_int8")


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

    def _views(self, kernel: ModuleType) -> tuple[object, ...]:
        """Our kernel's views of the weight and float32 scales, remade when the buffers were
        replaced or moved."""
        key = (self.weight.data_ptr(), self.scale.data_ptr())
        if getattr(self, "_view_key", None) != key:
            self._view_cache = kernel.weight_views(self.weight, self.scale)
            self._view_key = key
        return self._view_cache

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K = self.in_features
        rows = x.numel() // K
        # Ours for one row (a decoding step), where it is at least as fast as ATen's fused
        # kernel, and for float32, which that kernel does not take; ATen's for 2-32 rows of
        # 16-bit activations (measured at 1024 x 3072: 20-50 % faster there).
        ours_rows = rows <= (1 if x.dtype in (torch.bfloat16, torch.float16) else FUSED_MAX_ROWS)
        if (
            x.device.type == "cpu"
            and ours_rows
            and K % BLOCKS_GROUP == 0
            and not (x.requires_grad and torch.is_grad_enabled())
        ):
            kernel = int8_kernel()
            if kernel is not None:
                x2 = x.reshape(rows, K).float().contiguous()
                y = kernel.int8_matmul(*self._views(kernel), x2)
                y = y.to(x.dtype).view(*x.shape[:-1], self.out_features)
                return y if self.bias is None else y + self.bias.to(y.dtype)
        if (
            x.device.type == "cpu"
            and x.dtype in (torch.bfloat16, torch.float16)
            and x.dtype == self.scale.dtype
            and _fused_available()
            and not torch.is_grad_enabled()
            and rows <= FUSED_MAX_ROWS
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


# Layouts of Int4Linear.weight: our kernel's, ATen's (opaque), plain nibbles (any shape).
LAYOUTS = ("blocks", "aten", "nibbles")


def blocks_kernel_fits(in_features: int, group_size: int) -> bool:
    """Whether our kernel holds a layer of ``in_features`` columns in groups of ``group_size``
    (it reads groups of exactly 64)."""
    return group_size == BLOCKS_GROUP and in_features % BLOCKS_GROUP == 0


class Int4Linear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored as 4-bit codes, a scale and an offset per group.

    ``weight`` holds two codes per byte in one of :data:`LAYOUTS`, chosen at quantization:

    - ``"blocks"``: our kernel's (:mod:`omnispeech.kernels.numba_int4`): per group of 64
      columns 32 bytes, column ``j`` in the low nibble of byte ``j`` and column ``32 + j`` in
      its high nibble; ``scale_zeros`` is ``[out, in / 64, 2]`` float16.
    - ``"aten"``: ATen's CPU int4 kernel layout (opaque, made by
      ``_convert_weight_to_int4pack_for_cpu``); ``scale_zeros`` ``[in / group_size, out, 2]``
      in the activation dtype.
    - ``"nibbles"``: column ``2i`` in the low half of byte ``i``, ``2i + 1`` in the high half,
      for shapes or devices no kernel takes; ``scale_zeros`` as for ``"aten"``.

    Args:
        weight: ``[out, in / 2]`` uint8 (``"aten"``: the kernel's packed tensor).
        scale_zeros: (scale, offset) per group, shaped as the layout says.
        bias: ``[out]`` or None.
        group_size: input columns per group.
        layout: one of :data:`LAYOUTS`.
    """

    def __init__(  # noqa: PLR0913 - the stored tensors and how to read them
        self,
        weight: torch.Tensor,
        scale_zeros: torch.Tensor,
        bias: torch.Tensor | None,
        group_size: int,
        layout: str,
    ) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.register_buffer("weight", weight)
        self.register_buffer("scale_zeros", scale_zeros)
        self.register_buffer("bias", bias)
        self.group_size = group_size
        self.layout = layout
        self.in_features = weight.shape[1] * 2
        self.out_features = weight.shape[0]

    @property
    def kernel_layout(self) -> bool:
        """Whether ``weight`` is in a kernel's layout (``"blocks"`` or ``"aten"``)."""
        return self.layout != "nibbles"

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
            dtype: activation dtype the scales and offsets are stored in (``"blocks"`` keeps
                float16 whatever the activations).
            group_size: columns per group; when it does not divide the input width, the
                largest common divisor is used (such layers take the reference path).
            use_kernel: store a kernel's layout when the shape, processor and this torch allow:
                ours first (groups of 64 on x86 with AVX2), then ATen's.
        """
        w = linear.weight.detach()
        N, K = w.shape
        if K % 2:
            raise ValueError(f"int4 packs pairs of columns; {K} input columns is odd")
        group = math.gcd(K, group_size)
        q, scale, zero = quantize_int4(w, group)
        bias = linear.bias.detach().to(dtype) if linear.bias is not None else None
        on_cpu = use_kernel and w.device.type == "cpu"
        if on_cpu and blocks_kernel_fits(K, group) and blocks_kernel() is not None:
            halves = q.reshape(N, K // group, 2, group // 2)
            packed = (halves[:, :, 0] | (halves[:, :, 1] << 4)).reshape(N, K // 2)
            sz = torch.stack((scale, zero), dim=-1).to(torch.float16).contiguous()
            return cls(packed.contiguous(), sz, bias, group, "blocks")
        scale_zeros = torch.stack((scale.t(), zero.t()), dim=-1).contiguous().to(dtype)
        if on_cpu and _int4_kernel_available() and int4_kernel_fits(N, K, group):
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)
            return cls(packed, scale_zeros, bias, group, "aten")
        packed = q[:, 0::2] | (q[:, 1::2] << 4)
        return cls(packed, scale_zeros, bias, group, "nibbles")

    def _aten(self, x: torch.Tensor) -> torch.Tensor:
        """ATen's int4 matmul: ``x`` ``[M, in]`` -> ``[M, out]`` (scales cast to ``x``)."""
        return torch.ops.aten._weight_int4pack_mm_for_cpu(
            x, self.weight, self.group_size, self.scale_zeros.to(x.dtype)
        )

    def scales_offsets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each group's (scale, offset) as float32 ``[out, in / group_size]`` each, whatever
        the layout: weight ``(q - 8) * scale + offset``."""
        sz = self.scale_zeros.float()
        if self.layout == "blocks":
            return sz[..., 0], sz[..., 1]
        return sz[..., 0].t(), sz[..., 1].t()

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight as floats ``[out, in]``.

        ATen's layout is opaque, so it is read back through its kernel: an identity input in
        float32 returns each weight exactly (every sum adds zeros to one term).
        """
        N, K = self.out_features, self.in_features
        if self.layout == "aten":
            eye = torch.eye(K, device=self.weight.device)
            return self._aten(eye).t().to(dtype)
        if self.layout == "blocks":
            b = self.weight.reshape(N, K // self.group_size, self.group_size // 2)
            q = torch.cat((b & 15, b >> 4), dim=-1).reshape(N, K)
        else:
            q = torch.stack((self.weight & 15, self.weight >> 4), dim=-1).reshape(N, K)
        scale, zero = self.scales_offsets()
        return dequantize_int4(q, scale, zero, self.group_size).to(dtype)

    def _views(self, kernel: ModuleType) -> tuple[object, ...]:
        """The kernel's views of the weight, remade when the buffers were replaced or moved."""
        key = (self.weight.data_ptr(), self.scale_zeros.data_ptr())
        if getattr(self, "_view_key", None) != key:
            self._view_cache = kernel.weight_views(self.weight, self.scale_zeros)
            self._view_key = key
        return self._view_cache

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K = self.in_features
        rows = x.numel() // K
        y = None
        # Our kernel serves prompts too: per row it costs what ATen's int4 kernel does, while
        # unpacking the nibbles to multiply in floating point costs about 15 ms per 3M weights.
        if self.layout == "blocks" and x.device.type == "cpu":
            kernel = blocks_kernel()
            if kernel is not None and not (x.requires_grad and torch.is_grad_enabled()):
                x2 = x.reshape(rows, K).float().contiguous()
                y = kernel.int4_matmul(*self._views(kernel), x2)
                if x.dtype != torch.float32:
                    y = y.to(x.dtype)
        elif self.layout == "aten" and x.device.type == "cpu" and x.dtype == self.scale_zeros.dtype:
            y = self._aten(x.reshape(rows, K).contiguous())
        if y is None:
            bias = None if self.bias is None else self.bias.to(x.dtype)
            return F.linear(x, self.dequantized(x.dtype), bias)
        y = y.view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, int4, "
            f"group_size={self.group_size}, layout={self.layout}"
        )


def grouped_int4(x: torch.Tensor, layers: tuple[nn.Module, ...]) -> tuple[torch.Tensor, ...] | None:
    """``layer(x)`` for each of two or three :class:`Int4Linear` in our kernel's layout, in one
    kernel launch, or None when they cannot share one (other layers, layouts or widths, a
    device other than the CPU, a gradient to record, the kernel unavailable).

    Args:
        x: ``[..., in_features]`` in any float dtype.
        layers: the layers, all reading ``x``.

    Returns:
        Each layer's ``[..., out_features]`` in ``x``'s dtype, equal to calling it alone.
    """
    K = x.shape[-1]
    if not 2 <= len(layers) <= 3 or x.device.type != "cpu":
        return None
    if x.requires_grad and torch.is_grad_enabled():
        return None
    for layer in layers:
        if not (isinstance(layer, Int4Linear) and layer.layout == "blocks"):
            return None
        if layer.in_features != K:
            return None
    kernel = blocks_kernel()
    if kernel is None:
        return None
    x2 = x.reshape(-1, K).float().contiguous()
    outs = kernel.int4_matmul_many([layer._views(kernel) for layer in layers], x2)
    result = []
    for layer, y in zip(layers, outs, strict=True):
        y = y.view(*x.shape[:-1], layer.out_features)
        if x.dtype != torch.float32:
            y = y.to(x.dtype)
        result.append(y if layer.bias is None else y + layer.bias.to(y.dtype))
    return tuple(result)


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
