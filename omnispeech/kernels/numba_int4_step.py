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
from numba import njit, prange

from omnispeech.kernels import numba_int4
from omnispeech.kernels.numba_int4 import GROUP, _rounded, _row

__all__ = ["MAX_ROWS", "layer_step"]

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
