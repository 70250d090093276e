"""Triton kernels for CUDA tensors. Imported only on the first call that can use them.

Inputs may be float32, bfloat16 or float16; every kernel loads them, computes in float32 and
rounds once on the store, so half-precision results are at least as accurate as the
reference's op-by-op half arithmetic. Strides are passed explicitly: a ``[B, C, T]`` operand
needs only its last dim contiguous, so ``out`` can be a view into a padded buffer.

Launch grids: elementwise kernels take one program per (row, block of ``T``), with the row
``b * C + c`` on grid axis 0 (up to 2^31 - 1 rows) and the blocks on axis 1 (up to 65535, so
``T`` up to 67 M samples with blocks of 1024). Row offsets are widened to int64 before they
are multiplied by strides, since a long batch of audio exceeds 2^31 elements.

Kernel signatures follow the launch ABI (every pointer, size and stride is an argument), hence
their ``noqa: PLR0913``.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

# Samples per program of the elementwise kernels: 1024 float32 = 4 KB per operand, enough
# to hide memory latency with 4 warps without leaving short rows mostly masked.
_BLOCK_T = 1024
# Widest block of embedding columns per program (the released D is 1024; 512 also fits).
_MAX_BLOCK_D = 1024


@triton.jit
def _snake_kernel(  # noqa: PLR0913
    x_ptr,
    out_ptr,
    coef_ptr,
    C,
    T,
    sxb,
    sxc,
    sob,
    soc,
    BLOCK: tl.constexpr,
    PRECISE_SIN: tl.constexpr,
):
    """``coef [3, C]`` float32 = (e^alpha, 1 / (e^beta + 1e-9), bias or 0)."""
    row = tl.program_id(0).to(tl.int64)
    b = row // C
    c = row % C
    t = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = t < T
    x = tl.load(x_ptr + b * sxb + c * sxc + t, mask=mask).to(tl.float32)
    alpha = tl.load(coef_ptr + c)
    inv_beta = tl.load(coef_ptr + C + c)
    x = x + tl.load(coef_ptr + 2 * C + c)
    if PRECISE_SIN:
        # libdevice's sinf (<= 2 ulp over the whole range), never the hardware sin.approx,
        # whose error grows with |x| and would let large activations drift from the reference.
        s = libdevice.sin(x * alpha)
    else:
        # Triton's interpreter (CPU, for checking kernels without a GPU) cannot call libdevice;
        # its tl.sin is NumPy's.
        s = tl.sin(x * alpha)
    y = x + inv_beta * (s * s)
    tl.store(out_ptr + b * sob + c * soc + t, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _residual_kernel(  # noqa: PLR0913
    x_ptr,
    y_ptr,
    out_ptr,
    bias_ptr,
    C,
    T,
    sxb,
    sxc,
    syb,
    syc,
    sob,
    soc,
    BLOCK: tl.constexpr,
):
    """``out = (x + y) + bias[c]``; ``bias`` float32 ``[C]`` (zeros when there is none)."""
    row = tl.program_id(0).to(tl.int64)
    b = row // C
    c = row % C
    t = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = t < T
    x = tl.load(x_ptr + b * sxb + c * sxc + t, mask=mask).to(tl.float32)
    y = tl.load(y_ptr + b * syb + c * syc + t, mask=mask).to(tl.float32)
    z = (x + y) + tl.load(bias_ptr + c)
    tl.store(out_ptr + b * sob + c * soc + t, z.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _embed_kernel(  # noqa: PLR0913
    table_ptr,
    codes_ptr,
    offsets_ptr,
    out_ptr,
    K,
    T,
    D,
    s_row,
    s_cb,
    s_ck,
    s_ct,
    scale,
    BLOCK_D: tl.constexpr,
):
    """One program per (frame ``b * T + t``, block of ``D``); ``out [B, T, D]`` contiguous."""
    frame = tl.program_id(0).to(tl.int64)
    b = frame // T
    t = frame % T
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = d < D
    acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    # k = 0..K-1 in float32, the order of the reference's sum.
    for k in range(K):
        code = tl.load(codes_ptr + b * s_cb + k * s_ck + t * s_ct)
        row = code + tl.load(offsets_ptr + k)
        acc += tl.load(table_ptr + row * s_row + d, mask=mask).to(tl.float32)
    tl.store(out_ptr + frame * D + d, (acc * scale).to(out_ptr.dtype.element_ty), mask=mask)


def usable() -> bool:
    """Always True: CUDA itself refuses a forked child with a clear error of its own."""
    return True


def _coef(alpha: torch.Tensor, inv_beta: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    shift = torch.zeros_like(alpha) if bias is None else bias.float()
    return torch.stack([alpha.float(), inv_beta.float(), shift]).contiguous()


def snake_beta(
    x: torch.Tensor,
    alpha: torch.Tensor,
    inv_beta: torch.Tensor,
    bias: torch.Tensor | None,
    out: torch.Tensor,
) -> None:
    """Write SnakeBeta of ``x`` into ``out``.

    Args:
        x: ``[B, C, T]`` float32/bfloat16/float16, last dim contiguous, non-empty.
        alpha: ``[C]`` ``e^alpha`` (float32).
        inv_beta: ``[C]`` ``1 / (e^beta + 1e-9)`` (float32).
        bias: ``[C]`` or None.
        out: like ``x``; either ``x`` itself or memory disjoint from it.
    """
    B, C, T = x.shape
    grid = (B * C, triton.cdiv(T, _BLOCK_T))
    _snake_kernel[grid](
        x,
        out,
        _coef(alpha, inv_beta, bias),
        C,
        T,
        *x.stride()[:2],
        *out.stride()[:2],
        BLOCK=_BLOCK_T,
        PRECISE_SIN=os.environ.get("TRITON_INTERPRET", "0") != "1",
    )


def residual_add(
    x: torch.Tensor, y: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor
) -> None:
    """Write ``x + y + bias[c]`` into ``out``; ``[B, C, T]``, last dims contiguous.

    ``out`` may be ``x`` or ``y`` itself: each element is loaded before it is stored, by the
    same program.
    """
    B, C, T = x.shape
    b = torch.zeros(C, device=x.device) if bias is None else bias.float().contiguous()
    grid = (B * C, triton.cdiv(T, _BLOCK_T))
    _residual_kernel[grid](
        x,
        y,
        out,
        b,
        C,
        T,
        *x.stride()[:2],
        *y.stride()[:2],
        *out.stride()[:2],
        BLOCK=_BLOCK_T,
    )


def codebook_embed(
    table: torch.Tensor, codes: torch.Tensor, offsets: torch.Tensor, scale: float
) -> torch.Tensor:
    """``scale * sum_k table[codes[:, k] + offsets[k]]``.

    Args:
        table: ``[N, D]`` float32/bfloat16/float16, rows contiguous.
        codes: ``[B, K, T]`` int64, any strides, in range.
        offsets: ``[K]`` int64.
        scale: applied in float32 after the sum.

    Returns:
        ``[B, T, D]`` in ``table``'s dtype.
    """
    B, K, T = codes.shape
    D = table.shape[1]
    out = table.new_empty(B, T, D)
    block_d = min(_MAX_BLOCK_D, triton.next_power_of_2(D))
    grid = (B * T, triton.cdiv(D, block_d))
    _embed_kernel[grid](
        table,
        codes,
        offsets.contiguous(),
        out,
        K,
        T,
        D,
        table.stride(0),
        *codes.stride(),
        scale,
        BLOCK_D=block_d,
    )
    return out
