"""The public fused ops: check arguments, pick a path (see :mod:`.dispatch`), run it.

Each op computes exactly what its function in :mod:`.reference` computes; the accelerated
paths only fuse the passes (one read and one write per element instead of one per torch op)
and write into caller-provided memory. Float32 on CPU is compared with the reference to a few
ulps in ``tests/test_kernels.py``.
"""

from __future__ import annotations

import torch

from omnispeech.errors import InputError
from omnispeech.kernels import compiled, reference
from omnispeech.kernels.dispatch import accelerated

# Dtypes the accelerated kernels take per device type: Numba is compiled for float32 only;
# Triton loads half types and does its math in float32.
_KERNEL_DTYPES = {
    "cpu": (torch.float32,),
    "cuda": (torch.float32, torch.bfloat16, torch.float16),
}

# Columns (batch x output steps, or rows of a linear's input) up to which a matrix product runs
# the Numba kernel instead of torch's GEMM. With so few columns a product is a matter of reading
# the weights, and MKL's GEMM reads them at 6-10 GB/s on an AMD EPYC (Zen 4) where the kernel
# reads 20-30; from about 12-16 columns on, MKL's blocked GEMM is the faster one
# (benchmarks/RESULTS.md, "Speed on any CPU: a second processor, AMD EPYC").
SKINNY_COLUMNS = 8


def _grad(params: tuple[torch.Tensor, ...], x: torch.Tensor) -> bool:
    """Whether this call records a graph for a backward pass (a training step)."""
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))


def _rows_contiguous(t: torch.Tensor) -> bool:
    """Last dim contiguous (the kernels walk rows with unit stride); outer strides are free."""
    return t.shape[-1] == 1 or t.stride(-1) == 1


def _kernel_dtype(t: torch.Tensor) -> bool:
    return t.dtype in _KERNEL_DTYPES.get(t.device.type, ())


def _check_channels(name: str, t: torch.Tensor | None, channels: int, ref: torch.Tensor) -> None:
    if t is None:
        return
    if t.shape != (channels,):
        raise InputError(f"{name} must have shape [{channels}], got {list(t.shape)}")
    if t.device != ref.device:
        raise InputError(f"{name} is on {t.device} but the input is on {ref.device}")


def _span(t: torch.Tensor) -> tuple[int, int]:
    """Byte range ``[start, end)`` that ``t`` touches (strides are never negative in torch)."""
    start = t.data_ptr()
    last = sum((n - 1) * s for n, s in zip(t.shape, t.stride(), strict=True))
    return start, start + (last + 1) * t.element_size()


def _check_out(out: torch.Tensor | None, x: torch.Tensor, *inputs: torch.Tensor) -> None:
    """``out`` matches ``x`` and is each input itself or disjoint from it.

    A partial overlap (say ``out`` one step to the right of ``x`` in the same buffer) would
    make a row-parallel kernel read values it has already overwritten, so it is refused.
    """
    if out is None:
        return
    if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
        raise InputError(
            f"out must match the input: {list(x.shape)} {x.dtype} on {x.device}, "
            f"got {list(out.shape)} {out.dtype} on {out.device}"
        )
    if out.numel() == 0:
        return
    storage = out.untyped_storage().data_ptr()
    for t in inputs:
        if t.untyped_storage().data_ptr() != storage or t.numel() == 0:
            continue  # other memory (the usual case, checked cheaply)
        if t.data_ptr() == out.data_ptr() and t.stride() == out.stride():
            continue  # the very same view: in place
        # Conservative like torch's own out= check: overlapping byte ranges count as overlap
        # even when the elements interleave without touching.
        (t0, t1), (o0, o1) = _span(t), _span(out)
        if t0 < o1 and o0 < t1:
            raise InputError("out overlaps an input without being that input")


def snake_beta(
    x: torch.Tensor,
    log_alpha: torch.Tensor,
    log_beta: torch.Tensor,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """SnakeBeta, optionally fused with the preceding conv's bias and the next conv's padding.

    ``y = x' + sin(x' * e^alpha)^2 / (e^beta + 1e-9)`` with ``x' = x + bias[c]``.

    Args:
        x: ``[B, C, T]``; the last dim must be contiguous for the fast path, the other strides
            are free (e.g. a slice ``buf[:, :, pad:]`` of a larger buffer).
        log_alpha: ``[C]`` frequency, in log scale (the released ``alpha`` parameter).
        log_beta: ``[C]`` magnitude, in log scale (the released ``beta`` parameter).
        bias: ``[C]`` added to ``x`` first, or None. Lets a conv run without its bias and
            leave the add to this pass.
        out: ``[B, C, T]`` of ``x``'s dtype receiving the result, e.g. the view after the left
            context of the next causal conv's input buffer, so that no pad copy is needed.
            May be ``x`` itself (in place) but must not otherwise overlap ``x``.

    Returns:
        ``[B, C, T]``: ``out`` when given, else a new contiguous tensor.

    Raises:
        InputError: on mismatched shapes, devices or an overlapping ``out``.
    """
    if x.dim() != 3:
        raise InputError(f"snake_beta expects x of shape [B, C, T], got {list(x.shape)}")
    C = x.shape[1]
    _check_channels("log_alpha", log_alpha, C, x)
    _check_channels("log_beta", log_beta, C, x)
    _check_channels("bias", bias, C, x)
    _check_out(out, x, x)
    params = (log_alpha, log_beta) if bias is None else (log_alpha, log_beta, bias)
    supported = (
        x.numel() > 0
        and _kernel_dtype(x)
        and _rows_contiguous(x)
        and (out is None or _rows_contiguous(out))
        # Numba takes float32 parameters only; Triton converts them to float32 itself.
        and (x.is_cuda or all(p.dtype == torch.float32 for p in params))
    )
    module = accelerated((x, log_alpha, log_beta, bias, out), supported)
    if module is None:
        y = compiled.snake_beta(x, log_alpha, log_beta, bias) if _grad(params, x) else None
        if y is not None:
            return y if out is None else out.copy_(y)
        return reference.snake_beta(x, log_alpha, log_beta, bias, out)
    # The per-channel constants come from the reference's own torch ops, so they are the same
    # floats on every path and only the per-sample arithmetic is fused.
    alpha, inv_beta = reference.snake_constants(log_alpha.float(), log_beta.float())
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    module.snake_beta(x, alpha, inv_beta, None if bias is None else bias.float(), out)
    return out


def residual_add(
    x: torch.Tensor,
    y: torch.Tensor,
    bias: torch.Tensor | None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x + y + bias[c]`` in one pass: the end of a residual unit whose last conv ran without
    its bias (``x`` the residual branch, ``y`` the conv output).

    Args:
        x: ``[B, C, T]``.
        y: ``[B, C, T]`` of ``x``'s dtype.
        bias: ``[C]`` or None.
        out: ``[B, C, T]`` receiving the result; may be ``x`` or ``y`` itself.

    Returns:
        ``[B, C, T]``: ``out`` when given, else a new contiguous tensor.

    Raises:
        InputError: on mismatched shapes, dtypes, devices or an overlapping ``out``.
    """
    if x.dim() != 3 or y.shape != x.shape or y.dtype != x.dtype or y.device != x.device:
        raise InputError(
            f"residual_add expects x and y of one shape [B, C, T], dtype and device; got "
            f"{list(x.shape)} {x.dtype} {x.device} and {list(y.shape)} {y.dtype} {y.device}"
        )
    _check_channels("bias", bias, x.shape[1], x)
    _check_out(out, x, x, y)
    supported = (
        x.numel() > 0
        and _kernel_dtype(x)
        and all(_rows_contiguous(t) for t in (x, y) + (() if out is None else (out,)))
        and (x.is_cuda or bias is None or bias.dtype == torch.float32)
    )
    module = accelerated((x, y, bias, out), supported)
    if module is None:
        return reference.residual_add(x, y, bias, out)
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    module.residual_add(x, y, None if bias is None else bias.float(), out)
    return out


def codebook_embed(
    table: torch.Tensor, codes: torch.Tensor, offsets: torch.Tensor, scale: float
) -> torch.Tensor:
    """Sum (``scale = 1``) or mean (``scale = 1 / K``) of the ``K`` codebook vectors per frame.

    ``out[b, t] = scale * sum_k table[codes[b, k, t] + offsets[k]]``, added in order
    k = 0..K-1 in float32 (so it equals the reference, and ``.mean(1)`` when ``K`` is a power of
    two, bit for bit).

    Args:
        table: ``[N, D]`` every codebook stacked (row-contiguous for the fast path).
        codes: ``[B, K, T]`` int64 codes, each within its own codebook. The caller checks the
            range: the fast paths do not, and an out-of-range code reads outside ``table``.
        offsets: ``[K]`` int64 row of codebook ``k``'s first vector in ``table``.
        scale: multiplies the sum.

    Returns:
        ``[B, T, D]`` in ``table``'s dtype, contiguous.

    Raises:
        InputError: on mismatched shapes or devices.
    """
    if table.dim() != 2 or codes.dim() != 3 or offsets.shape != (codes.shape[1],):
        raise InputError(
            "codebook_embed expects table [N, D], codes [B, K, T] and offsets [K]; got "
            f"{list(table.shape)}, {list(codes.shape)} and {list(offsets.shape)}"
        )
    if codes.is_floating_point() or offsets.is_floating_point():
        raise InputError(f"codes and offsets must be integers, got {codes.dtype}, {offsets.dtype}")
    if not codes.device == offsets.device == table.device:
        raise InputError(
            f"table, codes and offsets must share a device, got "
            f"{table.device}, {codes.device}, {offsets.device}"
        )
    supported = (
        codes.numel() > 0
        and table.numel() > 0
        and _kernel_dtype(table)
        and table.stride(1) == 1
        and codes.dtype == offsets.dtype == torch.int64
    )
    module = accelerated((table, codes, offsets), supported)
    if module is None:
        return reference.codebook_embed(table, codes, offsets, scale)
    return module.codebook_embed(table, codes, offsets, float(scale))


def _skinny(columns: int, *tensors: torch.Tensor | None) -> bool:
    """Whether a product of ``columns`` columns can take the Numba matrix kernel."""
    present = [t for t in tensors if t is not None]
    return 0 < columns <= SKINNY_COLUMNS and all(
        t.device.type == "cpu" and t.dtype == torch.float32 for t in present
    )


def tap_matmul(
    taps: torch.Tensor, x: torch.Tensor, dilation: int = 1, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """A dense 1-D conv over an already padded input: ``k`` matrices, one per tap.

    ``out[b, :, t] = bias + sum_j taps[j] @ x[b, :, t + j * dilation]``. Products of at most
    :data:`SKINNY_COLUMNS` columns (``B * n``, a streaming push) run the Numba kernel on CPU
    float32, which reads each weight once; wider ones run torch's GEMMs (the reference).

    Args:
        taps: ``[k, M, C]``.
        x: ``[B, C, T]``, ``T >= (k - 1) * dilation`` (the left context included).
        dilation: input steps between taps, >= 1.
        bias: ``[M]`` or None.

    Returns:
        ``[B, M, n]`` with ``n = T - (k - 1) * dilation`` (0 when ``x`` holds only context).

    Raises:
        InputError: on mismatched shapes or too short an input.
    """
    if taps.dim() != 3 or x.dim() != 3 or taps.shape[2] != x.shape[1]:
        raise InputError(
            f"tap_matmul expects taps [k, M, C] and x [B, C, T]; got {list(taps.shape)} and "
            f"{list(x.shape)}"
        )
    k, M, _ = taps.shape
    n = x.shape[-1] - (k - 1) * dilation
    if dilation < 1 or n < 0:
        raise InputError(
            f"tap_matmul needs dilation >= 1 and at least {(k - 1) * dilation} steps, got "
            f"dilation {dilation} and {x.shape[-1]} steps"
        )
    _check_channels("bias", bias, M, x)
    module = accelerated((x, taps, bias), _skinny(x.shape[0] * n, x, taps, bias))
    if module is None:
        return reference.tap_matmul(taps, x, dilation, bias)
    return module.tap_matmul(taps, x, dilation, bias)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` as ``torch.nn.functional.linear``; inputs of at most
    :data:`SKINNY_COLUMNS` rows (a decoding step) run the Numba kernel on CPU float32.

    Args:
        x: ``[..., K]``.
        weight: ``[M, K]``.
        bias: ``[M]`` or None.

    Returns:
        ``[..., M]``.
    """
    rows = x.numel() // x.shape[-1] if x.dim() and x.shape[-1] else 0
    supported = weight.dim() == 2 and x.dim() >= 1 and x.shape[-1] == weight.shape[1]
    module = accelerated((x, weight, bias), supported and _skinny(rows, x, weight, bias))
    if module is None:
        return reference.linear(x, weight, bias)  # also raises torch's error on bad shapes
    return module.linear(x, weight, bias)
