"""One Qwen3 decoder layer for a few new positions, with 4-bit weights, in a single Numba call.

A decoding step of the 0.6B talker runs 28 talker layers and 15 x 5 code-predictor layers per
frame, each of them about 40 small torch operations (norms, projections, RoPE, the cache, the
attention, the MLP): at a few microseconds each, that is as long as reading the frame's 4-bit
weights from memory. This kernel does a whole layer in one call: RMSNorm, the q/k/v products
(one launch, the input rounded once), per-head q/k RMSNorm, RoPE, appending k and v to the
cache, attention over the cache, the output product and residual, RMSNorm, gate and up (one
launch), SiLU, down and residual. Each product is :mod:`omnispeech.kernels.numba_int4`'s
(the same rounding of the activations to int8 per group, the same integer sums), so the
products equal the layer-by-layer path exactly; norms, RoPE and attention differ from torch's
by float32 summation order only.

One stream, up to :data:`MAX_ROWS` new positions (a speech frame, or a frame and its text in a
single-stream talker), float32 activations, no left padding: anything else takes the
layer-by-layer path (:mod:`omnispeech.core.fused_step` decides). Longer prompts stay there
because their attention is a matrix product, which torch does better than these loops.
"""

from __future__ import annotations

import math

import numpy as np
from numba import carray, njit, prange, types
from numba.extending import intrinsic

from omnispeech.kernels import numba_int4
from omnispeech.kernels.numba_int4 import GROUP, _rounded, _row

__all__ = ["MAX_ROWS", "layer_step", "stack_step", "stack_table"]

# Most new positions per call (see the module docstring).
MAX_ROWS = 16


@njit(fastmath=True, cache=True)
def _rms_norm(x, weight, eps, out):  # noqa: ANN001, ANN202
    """``out = weight * x / sqrt(mean(x^2) + eps)`` over the whole vector."""
    total = np.float32(0.0)
    for i in range(x.shape[0]):
        total += x[i] * x[i]
    inv = np.float32(1.0) / np.sqrt(total / np.float32(x.shape[0]) + np.float32(eps))
    for i in range(x.shape[0]):
        out[i] = weight[i] * (x[i] * inv)


@njit(fastmath=True, cache=True)
def _norm_rope(v, weight, eps, cos, sin):  # noqa: ANN001, ANN202
    """Per-head RMSNorm then rotate-half RoPE of one head ``v`` ``[D]``, in place."""
    d = v.shape[0]
    half = d // 2
    total = np.float32(0.0)
    for i in range(d):
        total += v[i] * v[i]
    inv = np.float32(1.0) / np.sqrt(total / np.float32(d) + np.float32(eps))
    for i in range(d):
        v[i] = weight[i] * (v[i] * inv)
    for i in range(half):
        a = v[i]
        b = v[i + half]
        v[i] = a * cos[i] - b * sin[i]
        v[i + half] = b * cos[i + half] + a * sin[i + half]


@njit(parallel=True, fastmath=True, cache=True)
def _step(  # noqa: ANN202, PLR0913, PLR0915 - one layer's every tensor
    x,  # [M, H] hidden states of the new positions, float32
    norms,  # (input, post-attention) [H] each, (q, k) [D] each
    eps,
    weights,  # ((codes, scale_zeros) flattened) of q, k, v, o, gate, up, down
    n_out,  # output rows of q, k, v, o, gate, up, down
    keys,  # [H_kv, capacity, D] this layer's cache
    values,
    pos,  # where the first new key and value go (positions cached so far)
    cos,  # [M, D] RoPE tables at the new positions
    sin,
    heads,
    wide,  # whether the processor takes two groups per instruction
    out,  # [M, H]
):
    ln_in, ln_post, q_norm, k_norm = norms
    qc, qs, kc, ks, vc, vs, oc, os_, gc, gs, uc, us, dc, ds = weights
    nq, nk, nv, no, ng, nu, nd = n_out
    rows, hidden = x.shape
    d = keys.shape[2]
    kv_heads = keys.shape[0]
    group_heads = heads // kv_heads
    wide_h = wide != 0 and (hidden // GROUP) % 2 == 0
    wide_a = wide != 0 and ((heads * d) // GROUP) % 2 == 0
    wide_i = wide != 0 and (ng // GROUP) % 2 == 0

    # attention block: q, k, v from the normed input, one launch (each product's codes are
    # read once for all rows)
    h = np.empty((rows, hidden), np.float32)
    for m in range(rows):
        _rms_norm(x[m], ln_in, eps, h[m])
    a = _rounded(h)
    qkv = np.empty((rows, nq + nk + nv), np.float32)
    for t in prange(nq + nk + nv):
        for m in range(rows):
            if t < nq:
                qkv[m, t] = _row(qc, qs, t, a, m, wide_h)
            elif t < nq + nk:
                qkv[m, t] = _row(kc, ks, t - nq, a, m, wide_h)
            else:
                qkv[m, t] = _row(vc, vs, t - nq - nk, a, m, wide_h)
    for m in range(rows):
        for hd in range(heads):
            _norm_rope(qkv[m, hd * d : (hd + 1) * d], q_norm, eps, cos[m], sin[m])
        for g in range(kv_heads):
            k = qkv[m, nq + g * d : nq + (g + 1) * d]
            _norm_rope(k, k_norm, eps, cos[m], sin[m])
            keys[g, pos + m, :] = k
            values[g, pos + m, :] = qkv[m, nq + nk + g * d : nq + nk + (g + 1) * d]
    scale = np.float32(1.0 / math.sqrt(d))
    attn = np.zeros((rows, heads * d), np.float32)
    for hd in prange(heads):
        g = hd // group_heads
        scores = np.empty(pos + rows, np.float32)
        for m in range(rows):
            # causal: new position m sees the cache and the new positions up to itself
            length = pos + m + 1
            q = qkv[m, hd * d : (hd + 1) * d]
            peak = np.float32(-np.inf)
            for j in range(length):
                s = np.float32(0.0)
                for i in range(d):
                    s += q[i] * keys[g, j, i]
                s *= scale
                scores[j] = s
                peak = max(peak, s)
            total = np.float32(0.0)
            for j in range(length):
                scores[j] = np.exp(scores[j] - peak)
                total += scores[j]
            for j in range(length):
                w = scores[j] / total
                for i in range(d):
                    attn[m, hd * d + i] += w * values[g, j, i]
    o_act = _rounded(attn)
    mid = np.empty((rows, hidden), np.float32)
    for n in prange(no):
        for m in range(rows):
            mid[m, n] = x[m, n] + _row(oc, os_, n, o_act, m, wide_a)

    # MLP block: gate and up in one launch, then down
    for m in range(rows):
        _rms_norm(mid[m], ln_post, eps, h[m])
    m_act = _rounded(h)
    gu = np.empty((rows, ng + nu), np.float32)
    for t in prange(ng + nu):
        for m in range(rows):
            if t < ng:
                gu[m, t] = _row(gc, gs, t, m_act, m, wide_h)
            else:
                gu[m, t] = _row(uc, us, t - ng, m_act, m, wide_h)
    act = np.empty((rows, ng), np.float32)
    for i in prange(ng):
        for m in range(rows):
            g = gu[m, i]
            act[m, i] = g / (np.float32(1.0) + np.exp(-g)) * gu[m, ng + i]
    d_act = _rounded(act)
    for n in prange(nd):
        for m in range(rows):
            out[m, n] = mid[m, n] + _row(dc, ds, n, d_act, m, wide_i)


def layer_step(  # noqa: PLR0913 - one layer's every tensor
    x: np.ndarray,
    norms: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    eps: float,
    weights: tuple[np.ndarray, ...],
    n_out: tuple[int, ...],
    keys: np.ndarray,
    values: np.ndarray,
    pos: int,
    cos: np.ndarray,
    sin: np.ndarray,
    heads: int,
    out: np.ndarray,
) -> None:
    """One decoder layer for ``M`` new positions of one stream (see the module).

    Args:
        x: ``[M, H]`` float32 hidden states in.
        norms: float32 weights of the input and post-attention RMSNorms ``[H]`` and of the
            q and k norms ``[D]``.
        eps: the RMSNorms' epsilon.
        weights: flat codes (uint8) and flat scale/offset pairs (int16 bits of float16) of the
            q, k, v, o, gate, up and down products in the blocks layout, 14 arrays.
        n_out: output rows of those seven products.
        keys, values: ``[H_kv, capacity, D]`` float32 cache of this layer; the new keys and
            values are written at ``pos`` .. ``pos + M - 1``.
        pos: positions cached so far (where the first new position goes in the cache).
        cos, sin: ``[M, D]`` float32 RoPE tables at the new positions.
        heads: query heads (a multiple of ``H_kv``).
        out: ``[M, H]`` float32, written.
    """
    # read at each call, so that a test can switch the register width
    wide = int(numba_int4.WIDE)
    _step(x, norms, eps, weights, n_out, keys, values, pos, cos, sin, heads, wide, out)


# -- a whole stack per call -------------------------------------------------------------------
# A stack's layers reach the kernel as a table of addresses, one row per layer, instead of a
# tuple of arrays: Numba compiles a tuple's every element into the function's signature, and a
# 28-layer talker took minutes to compile that way; a table compiles once for any depth.
def _pointer(dtype: types.Type):  # noqa: ANN202 - returns a Numba intrinsic
    """An intrinsic turning an int64 address into a pointer to ``dtype`` (for ``carray``)."""
    ptr = types.CPointer(dtype)

    @intrinsic
    def pointer(typingctx, address):  # noqa: ANN001, ANN202
        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
            return builder.inttoptr(args[0], context.get_value_type(ptr))

        return ptr(types.int64), codegen

    return pointer


_F32 = _pointer(types.float32)
_U8 = _pointer(types.uint8)
_I16 = _pointer(types.int16)

# Columns of a stack's table: the four norms (input, post-attention, q, k), then the codes
# (uint8) and the scale/offset pairs (int16) of q, k, v, o, gate, up and down.
_NORMS = 4
_PRODUCTS = 7
_COLUMNS = _NORMS + 2 * _PRODUCTS


@njit(fastmath=True, cache=True)
def _layer(addrs, sizes, li):  # noqa: ANN001, ANN202
    """Layer ``li``'s ``(norms, weights)`` as :func:`_step` takes them, viewed in place."""
    a, n = addrs[li], sizes[li]
    norms = (carray(_F32(a[0]), n[0]), carray(_F32(a[1]), n[1]),
             carray(_F32(a[2]), n[2]), carray(_F32(a[3]), n[3]))  # fmt: skip
    weights = (
        carray(_U8(a[4]), n[4]), carray(_I16(a[5]), n[5]),
        carray(_U8(a[6]), n[6]), carray(_I16(a[7]), n[7]),
        carray(_U8(a[8]), n[8]), carray(_I16(a[9]), n[9]),
        carray(_U8(a[10]), n[10]), carray(_I16(a[11]), n[11]),
        carray(_U8(a[12]), n[12]), carray(_I16(a[13]), n[13]),
        carray(_U8(a[14]), n[14]), carray(_I16(a[15]), n[15]),
        carray(_U8(a[16]), n[16]), carray(_I16(a[17]), n[17]),
    )  # fmt: skip
    return norms, weights


@njit(fastmath=True, cache=True)
def _stack(x, addrs, sizes, n_outs, kv, kv_shape, eps, pos, cos, sin, heads, wide):  # noqa: ANN001, ANN202, PLR0913
    """:func:`_step` through every layer of a stack (see :func:`stack_step`); returns the
    last layer's output."""
    rows, hidden = x.shape
    for li in range(addrs.shape[0]):
        norms, weights = _layer(addrs, sizes, li)
        o = n_outs[li]
        n_out = (o[0], o[1], o[2], o[3], o[4], o[5], o[6])
        keys = carray(_F32(kv[li, 0]), kv_shape)
        values = carray(_F32(kv[li, 1]), kv_shape)
        out = np.empty((rows, hidden), np.float32)
        _step(x, norms, eps, weights, n_out, keys, values, pos, cos, sin, heads, wide, out)
        x = out
    return x


def _address(array: np.ndarray, dtype: type) -> tuple[int, int]:
    """``(address, length)`` of a contiguous 1-D array of ``dtype`` (checked: the kernel
    trusts both)."""
    if array.dtype != dtype or array.ndim != 1 or not array.flags.c_contiguous:
        raise ValueError(f"expected a contiguous 1-D {np.dtype(dtype)} array, got {array.dtype}")
    return array.ctypes.data, array.shape[0]


def stack_table(layers: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The table :func:`stack_step` reads: ``(addresses, lengths, n_out)``, int64 ``[L, 18]``,
    ``[L, 18]`` and ``[L, 7]``.

    Args:
        layers: per layer ``(norms, weights, n_out)`` as :func:`layer_step` takes them. The
            table points into these arrays: the caller keeps them alive while it is used.
    """
    addrs = np.empty((len(layers), _COLUMNS), np.int64)
    sizes = np.empty((len(layers), _COLUMNS), np.int64)
    n_outs = np.empty((len(layers), _PRODUCTS), np.int64)
    for li, (norms, weights, n_out) in enumerate(layers):
        if len(norms) != _NORMS or len(weights) != 2 * _PRODUCTS or len(n_out) != _PRODUCTS:
            raise ValueError("a layer has 4 norms and 7 products")
        cells = [_address(n, np.float32) for n in norms]
        cells += [_address(w, np.uint8 if i % 2 == 0 else np.int16) for i, w in enumerate(weights)]
        addrs[li] = [c[0] for c in cells]
        sizes[li] = [c[1] for c in cells]
        n_outs[li] = n_out
    return addrs, sizes, n_outs


def cache_addresses(keys: list[np.ndarray], values: list[np.ndarray]) -> np.ndarray:
    """``[L, 2]`` int64 addresses of each layer's ``[H_kv, capacity, D]`` float32 keys and
    values, all of one shape and contiguous (checked: the kernel trusts it)."""
    shape = keys[0].shape
    for array in (*keys, *values):
        if array.shape != shape or array.dtype != np.float32 or not array.flags.c_contiguous:
            raise ValueError("the layers' keys and values must be contiguous float32 of one shape")
    return np.array([[k.ctypes.data, v.ctypes.data] for k, v in zip(keys, values, strict=True)])


def stack_step(  # noqa: PLR0913 - a stack's every tensor
    x: np.ndarray,
    table: tuple[np.ndarray, np.ndarray, np.ndarray],
    kv: np.ndarray,
    kv_shape: tuple[int, int, int],
    eps: float,
    pos: int,
    cos: np.ndarray,
    sin: np.ndarray,
    heads: int,
) -> np.ndarray:
    """:func:`layer_step` through a whole stack of layers in one call (a decoding step of the
    talker's 28 layers pays one call's glue instead of 28).

    Args:
        x: ``[M, H]`` float32 hidden states in.
        table: the layers' :func:`stack_table` (one ``eps`` and one head count for all).
        kv: ``[L, 2]`` :func:`cache_addresses` of the layers' caches, ``kv_shape``
            ``(H_kv, capacity, D)`` each; written at ``pos`` .. ``pos + M - 1``
            (``pos + M <= capacity``: the caller checks).
        eps, pos, cos, sin, heads: as for :func:`layer_step`.

    Returns:
        ``[M, H]`` float32: the last layer's output (before any final norm).
    """
    addrs, sizes, n_outs = table
    wide = int(numba_int4.WIDE)
    return _stack(x, addrs, sizes, n_outs, kv, kv_shape, eps, pos, cos, sin, heads, wide)
