"""Numba kernels for CPU float32 tensors. Imported only on the first call that can use them.

Every kernel works on NumPy views of the caller's torch tensors (no copies) and writes its
result in place. A ``[B, C, T]`` tensor whose last dim is contiguous is passed as a flat 1-D
view of its memory plus its two outer strides: each row is then a contiguous slice, which LLVM
vectorises (a 3-D strided array makes it compute every address with a multiply and blocks
vectorisation). Rows run in parallel with ``prange``.

Compilation: each kernel has one explicit signature, so it compiles exactly once, when this
module is imported, and ``cache=True`` stores the machine code next to this file (or in
Numba's user cache dir when the package is read-only); later processes load it in
milliseconds.

Threads: Numba runs ``prange`` on its own thread pool (its ``omp`` layer here: a second GNU
OpenMP runtime beside torch's, as Numba links the system libgomp). Before each call we size
that pool to ``torch.get_num_threads()`` so the kernels use exactly the cores torch was told to
use. The two pools take turns, never run at once (every call returns before torch goes on),
so they do not oversubscribe the cores; measured, a kernel right after a parallel torch op
runs as fast as one after a serial op. GNU OpenMP is not fork-safe: Numba kills a forked child
that starts a parallel region, so a forked child uses the reference instead (:func:`usable`).
"""

from __future__ import annotations

import os
import threading

import numba
import numpy as np
import torch
from numba import float32, int64, njit, prange, types

# sin^2 in float64 (see _snake_kernel). Cody-Waite split of pi/2: the head has 33 significant
# bits, so q * _PIO2_HI is exact for |q| < 2^20 and the reduction loses nothing until |w| ~ 1.6e6;
# beyond, the error grows as |w| * 1e-16, still below a float32 ulp of the result for
# |w| < 1e8 (where the float32 input itself is spaced 8 radians apart).
_TWO_OVER_PI = 0.63661977236758134308
_PIO2_HI = 1.57079632673412561417e00
_PIO2_LO = 6.07710050650619224932e-11
# Taylor coefficients of sin up to r^9; on |r| <= pi/4 the first dropped term, r^11 / 11!,
# is below 2e-9, i.e. under 1/20 of a float32 ulp of sin(r).
_S3 = -1.0 / 6.0
_S5 = 1.0 / 120.0
_S7 = -1.0 / 5040.0
_S9 = 1.0 / 362880.0

# Elements per block of the elementwise loops; a block lives in L1 (see _snake_kernel).
_BLOCK = 256

_ROW = float32[::1]
_STRIDES = types.UniTuple(int64, 2)
_SHAPE = types.UniTuple(int64, 3)


@njit(
    (_ROW, _STRIDES, _ROW, _STRIDES, _SHAPE, _ROW, _ROW, _ROW),
    parallel=True,
    fastmath=False,
    cache=True,
)
def _snake_kernel(
    x: np.ndarray,
    x_strides: tuple[int, int],
    out: np.ndarray,
    out_strides: tuple[int, int],
    shape: tuple[int, int, int],
    alpha: np.ndarray,
    inv_beta: np.ndarray,
    bias: np.ndarray,
) -> None:
    """One (b, c) row per iteration; per channel ``e^alpha``, ``1 / (e^beta + eps)``, bias."""
    B, C, T = shape
    for row in prange(B * C):
        b = row // C
        c = row - b * C
        a, k, shift = alpha[c], inv_beta[c], bias[c]
        x0 = b * x_strides[0] + c * x_strides[1]
        o0 = b * out_strides[0] + c * out_strides[1]
        # Results go to an L1 block first, then to ``out``: with ``out`` possibly equal to
        # ``x`` (in place), LLVM cannot prove the two rows apart and would otherwise fall back
        # to its scalar loop, 5x slower. The block is provably distinct memory.
        block = np.empty(_BLOCK, np.float32)
        for t0 in range(0, T, _BLOCK):
            n = min(_BLOCK, T - t0)
            src = x[x0 + t0 : x0 + t0 + n]
            for t in range(n):
                v = src[t] + shift
                # x' * alpha is rounded to float32 first, exactly as the reference computes it.
                w = np.float64(v * a)
                # sin(w)^2 with no call into libm, so that this loop vectorises: Numba has no
                # vector sin without Intel's SVML, and a scalar sinf per sample is slower than
                # torch's vectorised one. With w = q * pi/2 + r, sin(w)^2 is sin(r)^2 for even
                # q and cos(r)^2 = 1 - sin(r)^2 for odd q: one polynomial on |r| <= pi/4 covers
                # every quadrant without a branch. Done in float64 and rounded once to float32,
                # it is at least as accurate as torch's float32 sin (<= 1 ulp).
                q = np.floor(w * _TWO_OVER_PI + 0.5)
                r = (w - q * _PIO2_HI) - q * _PIO2_LO
                r2 = r * r
                s = r + r * r2 * (_S3 + r2 * (_S5 + r2 * (_S7 + r2 * _S9)))
                odd = q - 2.0 * np.floor(q * 0.5)  # 0.0 or 1.0
                sin2 = s * s + odd * (1.0 - 2.0 * (s * s))
                # The clamp acts only where the reduction has broken down (|w| > 2^52): the
                # result stays a valid sin^2 instead of an exploding polynomial.
                sin2 = min(max(sin2, 0.0), 1.0)
                block[t] = v + k * np.float32(sin2)
            dst = out[o0 + t0 : o0 + t0 + n]
            for t in range(n):
                dst[t] = block[t]


@njit(
    (_ROW, _STRIDES, _ROW, _STRIDES, _ROW, _STRIDES, _SHAPE, _ROW),
    parallel=True,
    fastmath=False,
    cache=True,
)
def _residual_kernel(
    x: np.ndarray,
    x_strides: tuple[int, int],
    y: np.ndarray,
    y_strides: tuple[int, int],
    out: np.ndarray,
    out_strides: tuple[int, int],
    shape: tuple[int, int, int],
    bias: np.ndarray,
) -> None:
    """``out = (x + y) + bias[c]``, one (b, c) row per iteration, the reference's add order."""
    B, C, T = shape
    for row in prange(B * C):
        b = row // C
        c = row - b * C
        x0 = b * x_strides[0] + c * x_strides[1]
        y0 = b * y_strides[0] + c * y_strides[1]
        o0 = b * out_strides[0] + c * out_strides[1]
        bc = bias[c]
        # Through an L1 block for the same reason as in _snake_kernel: ``out`` is often ``y``,
        # and the direct loop then runs scalar, twice as slow on cache-resident rows.
        block = np.empty(_BLOCK, np.float32)
        for t0 in range(0, T, _BLOCK):
            n = min(_BLOCK, T - t0)
            xs, ys = x[x0 + t0 : x0 + t0 + n], y[y0 + t0 : y0 + t0 + n]
            for t in range(n):
                block[t] = (xs[t] + ys[t]) + bc
            dst = out[o0 + t0 : o0 + t0 + n]
            for t in range(n):
                dst[t] = block[t]


@njit(
    (_ROW, int64, int64[:, :, :], int64[:], float32, float32[:, ::1]),
    parallel=True,
    fastmath=False,
    cache=True,
)
def _embed_kernel(
    table: np.ndarray,
    table_stride: int,
    codes: np.ndarray,
    offsets: np.ndarray,
    scale: float,
    out: np.ndarray,
) -> None:
    """One output frame (b, t) per iteration; ``out [B * T, D]`` doubles as the accumulator."""
    B, K, T = codes.shape
    D = out.shape[1]
    for frame in prange(B * T):
        b = frame // T
        t = frame - b * T
        acc = out[frame]
        r0 = (codes[b, 0, t] + offsets[0]) * table_stride
        acc[:] = table[r0 : r0 + D]
        # k = 0..K-1 in float32, the order torch's ``sum(1)`` uses, so sums match bit for bit.
        for k in range(1, K):
            r = (codes[b, k, t] + offsets[k]) * table_stride
            src = table[r : r + D]
            for d in range(D):
                acc[d] += src[d]
        for d in range(D):
            acc[d] *= scale


# The dot products of _tap_kernel may be reassociated (that is what lets LLVM vectorise a
# reduction); nothing else is relaxed, so infinities and NaNs propagate as in torch.
_DOT_MATH = {"reassoc", "contract"}


@njit(
    (float32[:, :, ::1], float32[:, :, ::1], int64, _ROW, _ROW, _SHAPE, int64),
    parallel=True,
    fastmath=_DOT_MATH,
    cache=True,
)
def _tap_kernel(
    taps: np.ndarray,
    xt: np.ndarray,
    dilation: int,
    bias: np.ndarray,
    out: np.ndarray,
    out_strides: tuple[int, int, int],
    n: int,
) -> None:
    """``out[b, t, m] = bias[m] + sum_j taps[j, m] . xt[b, t + j * dilation]`` for t < n.

    One output row ``m`` per iteration: its ``k`` weight rows are read from memory once and
    serve every column (from L1), four columns per pass so that each loaded weight feeds four
    multiply-adds. ``out`` is flat with strides (b, t, m), so one kernel writes both the
    conv layout ``[B, M, n]`` and the linear layout ``[n, M]``.
    """
    k, M, C = taps.shape
    B = xt.shape[0]
    sb, st, sm = out_strides
    for m in prange(M):
        bm = bias[m]
        for b in range(B):
            base = b * sb + m * sm
            t = 0
            while t + 4 <= n:
                a0 = a1 = a2 = a3 = np.float32(0.0)
                for j in range(k):
                    w = taps[j, m]
                    s = t + j * dilation
                    x0, x1, x2, x3 = xt[b, s], xt[b, s + 1], xt[b, s + 2], xt[b, s + 3]
                    for c in range(C):
                        wc = w[c]
                        a0 += wc * x0[c]
                        a1 += wc * x1[c]
                        a2 += wc * x2[c]
                        a3 += wc * x3[c]
                out[base + t * st] = bm + a0
                out[base + (t + 1) * st] = bm + a1
                out[base + (t + 2) * st] = bm + a2
                out[base + (t + 3) * st] = bm + a3
                t += 4
            while t < n:
                a0 = np.float32(0.0)
                for j in range(k):
                    w = taps[j, m]
                    x0 = xt[b, t + j * dilation]
                    for c in range(C):
                        a0 += w[c] * x0[c]
                out[base + t * st] = bm + a0
                t += 1


# The process that imported this module; a child forked from it must not call the kernels.
_IMPORT_PID = os.getpid()


def usable() -> bool:
    """Whether the kernels can run in this process (False in a child forked after import)."""
    return os.getpid() == _IMPORT_PID


# numba.set_num_threads costs more than a small kernel launch; it is thread-local, so each
# Python thread remembers the count it last set and calls it only when torch's count changes.
_thread = threading.local()


def set_threads() -> None:
    """Use as many threads as torch does (Numba's pool cannot grow past its start-up size)."""
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if getattr(_thread, "num_threads", None) != n:
        numba.set_num_threads(n)
        _thread.num_threads = n


def _rows(t: torch.Tensor) -> tuple[np.ndarray, tuple[int, int]]:
    """A ``[B, C, T]`` tensor (last dim contiguous) as (flat float32 memory, outer strides).

    Element ``(b, c, i)`` is at ``b * strides[0] + c * strides[1] + i`` of the flat array. The
    span may cover memory between rows that belongs to nobody here (a padded buffer's left
    context); the kernels never touch it. The view needs no ``detach``: kernels only run when
    no gradient is recorded, so it never requires grad.
    """
    B, C, T = t.shape
    s0, s1, _ = t.stride()
    span = (B - 1) * s0 + (C - 1) * s1 + T
    return torch.as_strided(t, (span,), (1,)).numpy(), (s0, s1)


def _channels(p: torch.Tensor) -> np.ndarray:
    """A ``[C]`` parameter as a contiguous float32 array (detached: it may be an nn.Parameter)."""
    return p.detach().contiguous().numpy()


def snake_beta(
    x: torch.Tensor,
    alpha: torch.Tensor,
    inv_beta: torch.Tensor,
    bias: torch.Tensor | None,
    out: torch.Tensor,
) -> None:
    """Write SnakeBeta of ``x`` into ``out``.

    Args:
        x: ``[B, C, T]`` float32, last dim contiguous, B, C, T >= 1.
        alpha: ``[C]`` float32 ``e^alpha``.
        inv_beta: ``[C]`` float32 ``1 / (e^beta + 1e-9)``.
        bias: ``[C]`` float32 or None.
        out: like ``x``; either ``x`` itself or memory disjoint from it.
    """
    set_threads()
    shift = torch.zeros_like(alpha) if bias is None else bias
    xf, xs = _rows(x)
    of, os_ = _rows(out)
    _snake_kernel(
        xf, xs, of, os_, tuple(x.shape), _channels(alpha), _channels(inv_beta), _channels(shift)
    )


def residual_add(
    x: torch.Tensor, y: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor
) -> None:
    """Write ``x + y + bias[c]`` into ``out``; all ``[B, C, T]`` float32, last dim contiguous.

    ``out`` may be ``x`` or ``y`` itself (each element is read before it is written).
    """
    set_threads()
    b = x.new_zeros(x.shape[1]) if bias is None else bias
    xf, xs = _rows(x)
    yf, ys = _rows(y)
    of, os_ = _rows(out)
    _residual_kernel(xf, xs, yf, ys, of, os_, tuple(x.shape), _channels(b))


def codebook_embed(
    table: torch.Tensor, codes: torch.Tensor, offsets: torch.Tensor, scale: float
) -> torch.Tensor:
    """``scale * sum_k table[codes[:, k] + offsets[k]]``.

    Args:
        table: ``[N, D]`` float32 with contiguous rows.
        codes: ``[B, K, T]`` int64 (any strides), each row index in range; K >= 1.
        offsets: ``[K]`` int64.
        scale: the float32 factor applied last.

    Returns:
        ``[B, T, D]`` float32, contiguous.
    """
    set_threads()
    B, _, T = codes.shape
    N, D = table.shape
    out = table.new_empty(B, T, D)
    flat = torch.as_strided(table, ((N - 1) * table.stride(0) + D,), (1,))
    _embed_kernel(
        flat.numpy(),
        table.stride(0),
        codes.numpy(),
        offsets.numpy(),
        np.float32(scale),
        out.view(B * T, D).numpy(),
    )
    return out


def tap_matmul(
    taps: torch.Tensor, x: torch.Tensor, dilation: int, bias: torch.Tensor | None
) -> torch.Tensor:
    """``out[b, :, t] = bias + sum_j taps[j] @ x[b, :, t + j * dilation]``.

    Args:
        taps: ``[k, M, C]`` float32.
        x: ``[B, C, T]`` float32 (any strides), ``T >= (k - 1) * dilation + 1``.
        dilation: input steps between taps.
        bias: ``[M]`` float32 or None.

    Returns:
        ``[B, M, T - (k - 1) * dilation]`` float32, contiguous.
    """
    set_threads()
    k, M, _ = taps.shape
    B, _, T = x.shape
    n = T - (k - 1) * dilation
    out = x.new_empty(B, M, n)
    xt = x.transpose(1, 2).contiguous()  # [B, T, C]: each step's channels in a row
    b = x.new_zeros(M) if bias is None else bias
    _tap_kernel(
        taps.detach().contiguous().numpy(),
        xt.numpy(),
        dilation,
        _channels(b),
        out.view(-1).numpy(),
        (M * n, 1, n),
        n,
    )
    return out


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight.T + bias`` for ``x [..., K]`` float32, ``weight [M, K]``, ``bias [M]``.

    Returns:
        ``[..., M]`` float32, contiguous.
    """
    set_threads()
    M, K = weight.shape
    rows = x.numel() // K
    out = x.new_empty(*x.shape[:-1], M)
    b = x.new_zeros(M) if bias is None else bias
    _tap_kernel(
        weight.detach().contiguous()[None].numpy(),
        x.reshape(1, rows, K).contiguous().numpy(),
        1,
        _channels(b),
        out.view(-1).numpy(),
        (0, M, 1),
        rows,
    )
    return out
