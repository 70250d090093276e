"""A code predictor's whole frame in one Numba call, with 4-bit weights.

Per speech frame the multi-token predictor makes ``K - 1`` residual codes one after another:
each step runs its decoder layers over one new position, scores the step's codebook with its
own head, draws a code and embeds it as the next step's input. At the 0.6B shapes that is
15 steps of 5 layers, 15 heads and 15 draws, about 120 calls from Python per frame, each with
its own glue (the layer's arguments, the head's launch, a dozen torch operations of the draw).
On a 2-core machine that glue cost a third of the predictor's time. This kernel runs the whole
loop: the layers of each step are :func:`omnispeech.kernels.numba_int4_step.stack_step`'s
(the same arithmetic as one call per layer), the final RMSNorm and the head's product run on
the last position only (the only one a step reads), and the draw happens here too.

The draw is the one :func:`omnispeech.core.sampling.sample` makes for top-k sampling with
``top_p = 1``: the logits divided by the temperature, the ``k`` largest kept, their softmax,
and one categorical draw, which is ``argmax(p / q)`` with ``q`` exponential noise. That is
how ATen's ``multinomial`` draws one sample; the caller draws the noise from the same torch
generator, with the same shape and in the same order, so a seed consumes its generator as
the step-by-step path does and the same noise picks the same candidate wherever the two
paths' probabilities agree (they differ by float32 rounding only). Greedy decoding takes the
arg-max of the raw logits, the first one on ties, as ``torch.argmax`` does.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, prange

from omnispeech.kernels import numba_int4
from omnispeech.kernels.numba_int4 import _rounded, _row
from omnispeech.kernels.numba_int4_step import (
    _F32,
    _I16,
    _U8,
    _address,
    _rms_norm,
    _stack,
    cache_addresses,
)

__all__ = ["cache_addresses", "predict_frame"]


@njit(parallel=True, fastmath=True, cache=True)
def _head(codes, scale_zeros, vocab, x, wide):  # noqa: ANN001, ANN202
    """Logits ``[vocab]`` of one normed hidden state ``x`` ``[1, H]``."""
    act = _rounded(x)
    wide_h = wide != 0 and (x.shape[1] // numba_int4.GROUP) % 2 == 0
    logits = np.empty(vocab, np.float32)
    for n in prange(vocab):
        logits[n] = _row(codes, scale_zeros, n, act, 0, wide_h)
    return logits


@njit(fastmath=True, cache=True)
def _choose(logits, greedy, temperature, top_k, noise):  # noqa: ANN001, ANN202
    """One code from ``logits`` ``[V]``: the first arg-max when ``greedy``, else a draw among
    the ``top_k`` largest of ``logits / temperature`` (all ``V`` when ``top_k`` is ``V``)
    with ``noise`` ``[top_k]`` exponential (see the module docstring)."""
    vocab = logits.shape[0]
    if greedy:
        best = 0
        for i in range(1, vocab):
            if logits[i] > logits[best]:
                best = i
        return best
    vals = np.empty(top_k, np.float32)
    idx = np.empty(top_k, np.int64)
    count = 0
    if top_k >= vocab:
        # every code is a candidate, in vocabulary order (the order of the noise then)
        for i in range(vocab):
            vals[i] = logits[i] / np.float32(temperature)
            idx[i] = i
        count = vocab
    # The candidates in descending order, each new one inserted into the sorted buffer: most
    # logits fall below the buffer's smallest and cost one comparison.
    for i in range(vocab if count < top_k else 0):
        v = logits[i] / np.float32(temperature)
        if count == top_k:
            if not v > vals[top_k - 1]:
                continue
            j = top_k - 1
        else:
            j = count
            count += 1
        while j > 0 and vals[j - 1] < v:
            vals[j] = vals[j - 1]
            idx[j] = idx[j - 1]
            j -= 1
        vals[j] = v
        idx[j] = i
    peak = vals[0]
    for j in range(1, top_k):
        peak = max(peak, vals[j])
    total = np.float32(0.0)
    for j in range(top_k):
        vals[j] = np.exp(vals[j] - peak)
        total += vals[j]
    best = 0
    best_ratio = np.float32(-1.0)
    for j in range(top_k):
        ratio = (vals[j] / total) / noise[j]
        if ratio > best_ratio:
            best_ratio = ratio
            best = j
    return idx[best]


@njit(fastmath=True, cache=True)
def _predict(  # noqa: ANN202, PLR0913 - the frame's every tensor
    x0,  # [2, H] the talker's hidden state and its codebook-0 embedding
    addrs,  # the layers' table (numba_int4_step.stack_table)
    sizes,
    n_outs,
    kv,  # [L, 2] addresses of the layers' caches, kv_shape each
    kv_shape,
    eps,
    final_norm,  # [H]
    heads,  # [K - 1, 4]: per step its head's codes and scale/offset pairs (address, length)
    vocab,
    tables,  # [K - 1] addresses of the steps' embedding tables [V, H]
    cos,  # [K, D] RoPE tables at positions 0 .. K-1
    sin,
    n_heads,
    wide,
    greedy,
    temperature,
    top_k,
    noise,  # [K - 1, top_k] exponential noise of the draws (unused when greedy)
    codes,  # [K - 1] int64, written
    embed_sum,  # [H] float32, written: the sum of the chosen codes' embeddings
):
    hidden = x0.shape[1]
    x = x0.copy()
    pos = 0
    embed_sum[:] = 0.0
    for j in range(heads.shape[0]):
        rows = x.shape[0]
        end = pos + rows
        x = _stack(
            x, addrs, sizes, n_outs, kv, kv_shape, eps, pos, cos[pos:end], sin[pos:end],
            n_heads, wide,
        )  # fmt: skip
        last = np.empty((1, hidden), np.float32)
        _rms_norm(x[rows - 1], final_norm, eps, last[0])
        head_codes = carray(_U8(heads[j, 0]), heads[j, 1])
        head_scales = carray(_I16(heads[j, 2]), heads[j, 3])
        logits = _head(head_codes, head_scales, vocab, last, wide)
        code = _choose(logits, greedy, temperature, top_k, noise[j])
        codes[j] = code
        table = carray(_F32(tables[j]), (vocab, hidden))
        x = np.empty((1, hidden), np.float32)
        x[0, :] = table[code]
        for i in range(hidden):
            embed_sum[i] += x[0, i]
        pos = end


def predict_frame(  # noqa: PLR0913 - the frame's every tensor
    x0: np.ndarray,
    table: tuple[np.ndarray, np.ndarray, np.ndarray],
    kv: np.ndarray,
    kv_shape: tuple[int, int, int],
    eps: float,
    final_norm: np.ndarray,
    heads: list[tuple[np.ndarray, np.ndarray]],
    tables: list[np.ndarray],
    cos: np.ndarray,
    sin: np.ndarray,
    n_heads: int,
    greedy: bool,
    temperature: float,
    top_k: int,
    noise: np.ndarray,
    codes: np.ndarray,
    embed_sum: np.ndarray,
) -> None:
    """Codebooks 1..K-1 of one frame of one stream (see the module).

    Args:
        x0: ``[2, H]`` float32: the talker's final-normed hidden state and the embedding of
            the codebook-0 code it chose.
        table: the decoder layers' :func:`~omnispeech.kernels.numba_int4_step.stack_table`.
        kv: ``[L, 2]`` :func:`~omnispeech.kernels.numba_int4_step.cache_addresses` of the
            layers' caches, ``kv_shape`` ``(H_kv, capacity, D)`` each, capacity at least
            ``K``; positions 0 .. K-1 are written.
        eps: the RMSNorms' epsilon (the layers' and the final one's).
        final_norm: ``[H]`` float32 weight of the stack's final RMSNorm.
        heads: per residual codebook its head's flat codes (uint8) and flat scale/offset
            pairs (int16 bits of float16), blocks layout, ``V`` rows of ``H`` columns each.
        tables: per residual codebook its embedding table ``[V, H]`` float32, contiguous.
        cos, sin: ``[K, D]`` float32 RoPE tables at positions 0 .. K-1.
        n_heads: query heads.
        greedy: take the arg-max (``temperature``, ``top_k`` and ``noise`` unused).
        temperature: divides the logits before the top-k.
        top_k: candidates per draw, 1 .. V.
        noise: ``[K - 1, top_k]`` float32 exponential noise, one row per draw.
        codes: ``[K - 1]`` int64, written: the chosen codes.
        embed_sum: ``[H]`` float32, written: the sum of their embeddings.
    """
    steps = codes.shape[0]
    vocab, hidden = tables[0].shape
    if len(heads) != steps or len(tables) != steps or kv_shape[1] < steps + 1:
        raise ValueError(f"{steps} draws need {steps} heads, {steps} tables, {steps + 1} positions")
    for t in tables:
        if t.shape != (vocab, hidden) or t.dtype != np.float32 or not t.flags.c_contiguous:
            raise ValueError("the embedding tables must be contiguous float32 of one shape")
    head_cells = []
    for head_codes, head_scales in heads:
        # two codes per byte; a (scale, offset) pair of int16 per 64 columns
        if head_codes.shape[0] * 2 != vocab * hidden or head_scales.shape[0] * 32 != vocab * hidden:
            raise ValueError(f"a head must have {vocab} rows of {hidden} columns")
        head_cells.append(_address(head_codes, np.uint8) + _address(head_scales, np.int16))
    addrs, sizes, n_outs = table
    _predict(
        x0, addrs, sizes, n_outs, kv, kv_shape, eps, final_norm, np.array(head_cells), vocab,
        np.array([t.ctypes.data for t in tables]), cos, sin, n_heads, int(numba_int4.WIDE),
        bool(greedy), float(temperature), int(top_k), noise, codes, embed_sum,
    )  # fmt: skip
