"""The code predictor's frame in one kernel call, for 4-bit predictors on the CPU.

:meth:`CodePredictor.predict <omnispeech.talker.code_predictor.CodePredictor.predict>` asks
:func:`fused_predict` first; it answers None unless the frame is one
:mod:`omnispeech.kernels.numba_int4_predict` serves, and the predictor then runs step by step.
It serves one stream in float32 on a CPU where our int4 kernel runs, a predictor in the
talker's width (no input projection: the 0.6B models) whose decoder layers, heads and their
seven products each are :class:`~omnispeech.core.quant.Int4Linear` in the blocks layout
(``Talker.quantize_int4`` makes them), with greedy decoding or top-k sampling without top-p
(the released settings). The random draws come from the caller's generator, as the step-by-step
path draws them (see the kernel's module).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from omnispeech.core.fused_step import stack_plan
from omnispeech.core.quant import Int4Linear, blocks_kernel
from omnispeech.core.sampling import Generators, SamplingConfig

if TYPE_CHECKING:
    from omnispeech.talker.code_predictor import CodePredictor


def _kernel() -> ModuleType | None:
    """The frame kernel's module, imported (and compiled) on first use; None where our int4
    kernel cannot run."""
    if blocks_kernel() is None:
        return None
    return importlib.import_module("omnispeech.kernels.numba_int4_predict")


def _weights(predictor: CodePredictor) -> tuple | None:
    """The kernel's arguments that depend on the weights alone, or None when it cannot run
    them. The layers' part is :func:`~omnispeech.core.fused_step.stack_plan`'s."""
    model = predictor.model
    stack = stack_plan(model.layers)
    if stack is None:
        return None
    table, eps, n_heads = stack
    if eps != model.norm.eps or model.norm.weight.dtype != torch.float32:
        return None
    kernel = blocks_kernel()
    hidden = model.norm.weight.shape[0]
    vocab = predictor.cfg.vocab_size
    heads = []
    for head in predictor.lm_head:
        if not isinstance(head, Int4Linear) or head.layout != "blocks" or head.bias is not None:
            return None
        if head.in_features != hidden or head.out_features != vocab:
            return None
        heads.append(tuple(view.reshape(-1) for view in head._views(kernel)))
    tables = [table.weight for table in model.codec_embedding]
    if any(t.dtype != torch.float32 or t.shape != (vocab, hidden) for t in tables):
        return None
    return (
        table,
        float(eps),
        model.norm.weight.detach().numpy(),
        heads,
        [t.detach().contiguous().numpy() for t in tables],
        n_heads,
    )


def _noise(
    sampling: SamplingConfig, generator: Generators, draws: int, candidates: int
) -> np.ndarray | None:
    """``[draws, candidates]`` exponential noise drawn as ``torch.multinomial`` draws it for one
    row of ``candidates`` probabilities, draw after draw from the same generator; None when
    the generators are not one stream's."""
    if not sampling.do_sample:
        return np.zeros((draws, 1), np.float32)
    if generator is not None and not isinstance(generator, torch.Generator):
        if len(generator) != 1:
            return None  # the step-by-step path says what is wrong
        generator = generator[0]
    rows = [torch.empty(1, candidates).exponential_(generator=generator) for _ in range(draws)]
    return torch.cat(rows).numpy()


def fused_predict(
    predictor: CodePredictor,
    hidden: torch.Tensor,
    code0_embed: torch.Tensor,
    sampling: SamplingConfig,
    generator: Generators,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``predictor.predict(...)`` in one kernel call, or None when the frame is not one it
    serves (see the module); same arguments and results.

    Args:
        predictor: the code predictor.
        hidden: ``[1, H]`` the talker's final-normed hidden state.
        code0_embed: ``[1, H]`` the embedding of the codebook-0 code.
        sampling: how each residual code is chosen.
        generator: randomness for sampling (one generator, or a list of one).

    Returns:
        ``(codes [1, K-1] int64, embed_sum [1, H] float32)``, or None.
    """
    if hidden.shape[0] != 1 or hidden.dtype != torch.float32 or hidden.device.type != "cpu":
        return None
    if not isinstance(predictor.small_to_mtp_projection, nn.Identity):
        return None
    if sampling.do_sample and sampling.top_p < 1.0:
        return None
    kernel = _kernel()
    if kernel is None:
        return None
    weights = _weights(predictor)
    if weights is None:
        return None
    table, eps, final_norm, heads, tables, n_heads = weights
    K = predictor.num_code_groups
    vocab = predictor.cfg.vocab_size
    top_k = sampling.top_k if 0 < sampling.top_k < vocab else vocab
    noise = _noise(sampling, generator, K - 1, top_k)
    if noise is None:
        return None
    cache = predictor._frame_cache(1, hidden)
    layers = cache.layers
    kv = kernel.cache_addresses(
        [c.keys[0].numpy() for c in layers], [c.values[0].numpy() for c in layers]
    )
    cos, sin = predictor.model._rope_tables(0, K, hidden)
    x0 = torch.cat((hidden, code0_embed)).detach().float().contiguous()
    codes = torch.empty(1, K - 1, dtype=torch.long)
    embed_sum = torch.empty(1, x0.shape[1])
    kernel.predict_frame(
        x0.numpy(), table, kv, tuple(layers[0].keys.shape[1:]), eps, final_norm, heads, tables,
        cos[0].contiguous().numpy(), sin[0].contiguous().numpy(), n_heads,
        not sampling.do_sample, sampling.temperature, top_k, noise,
        codes[0].numpy(), embed_sum[0].numpy(),
    )  # fmt: skip
    for c in layers:
        c.length = K
    return codes, embed_sum
