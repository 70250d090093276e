"""A whole decoder layer per Numba call for the decoding steps of int4 models.

:class:`omnispeech.core.transformer.DecoderLayer` asks :func:`fused_layer_step` first; it answers
None unless the step is one it serves, and the layer then runs module by module. It serves one
stream at a few new positions (a speech frame; a frame and its text), float32 activations, no
gradient, on a CPU where our int4 kernel runs, in a layer whose seven products are
:class:`~omnispeech.core.quant.Int4Linear` in the blocks layout (``quantize_int4`` makes them)
and whose MLP is the dense SwiGLU. The arithmetic is
:mod:`omnispeech.kernels.numba_int4_step`'s.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

import torch
from torch import nn

from omnispeech.core.attention import GQAttention, KVCache
from omnispeech.core.quant import Int4Linear, blocks_kernel

if TYPE_CHECKING:
    from omnispeech.core.transformer import DecoderLayer


def _step_kernel() -> ModuleType | None:
    """The layer kernel's module, imported (and compiled) on first use; None where our int4
    kernel cannot run."""
    if blocks_kernel() is None:
        return None
    return importlib.import_module("omnispeech.kernels.numba_int4_step")


_PRODUCTS = (
    ("self_attn", "q_proj"),
    ("self_attn", "k_proj"),
    ("self_attn", "v_proj"),
    ("self_attn", "o_proj"),
    ("mlp", "gate_proj"),
    ("mlp", "up_proj"),
    ("mlp", "down_proj"),
)


def _key(layer: DecoderLayer) -> tuple[int, ...]:
    """Identities of the modules and tensors the plan reads.

    Plain dictionary lookups rather than module attributes: this runs at every step of every
    layer, and ``nn.Module.__getattr__`` would cost as much as the rest of the step's glue. A
    plan holds views of its tensors, so their ids cannot be reused while it lives.
    """
    mods = layer._modules
    attn = mods["self_attn"]._modules
    key = [
        id(mods["input_layernorm"]._parameters["weight"]),
        id(mods["post_attention_layernorm"]._parameters["weight"]),
        id(attn["q_norm"]._parameters["weight"]),
        id(attn["k_norm"]._parameters["weight"]),
    ]
    for parent, name in _PRODUCTS:
        linear = mods[parent]._modules[name]
        buffers = linear._buffers
        key += (id(linear), id(buffers.get("weight")), id(buffers.get("scale_zeros")))
    return tuple(key)


def _make_plan(layer: DecoderLayer) -> tuple | None:
    """The kernel's arguments that depend on the weights alone (numpy views, no copies), or
    None when the layer is not one the kernel runs (float or other-layout products, biases,
    16-bit norms)."""
    attn, mlp = layer.self_attn, layer.mlp
    linears = [getattr(attn if parent == "self_attn" else mlp, name) for parent, name in _PRODUCTS]
    for linear in linears:
        if not isinstance(linear, Int4Linear) or linear.layout != "blocks":
            return None
        if linear.bias is not None:
            return None
    norms = (
        layer.input_layernorm.weight,
        layer.post_attention_layernorm.weight,
        attn.q_norm.weight,
        attn.k_norm.weight,
    )
    if any(n.dtype != torch.float32 for n in norms):
        return None
    weights: list = []
    kernel = blocks_kernel()
    for lin in linears:
        # the layer's own kernel views (the ones its module path reads), flattened
        weights += [view.reshape(-1) for view in lin._views(kernel)]
    return (
        tuple(n.detach().numpy() for n in norms),
        float(layer.input_layernorm.eps),
        tuple(weights),
        tuple(lin.out_features for lin in linears),
        attn.num_heads,
    )


def _plan(layer: DecoderLayer) -> tuple | None:
    """:func:`_make_plan`, kept on the layer and remade when a module or tensor it reads was
    replaced (quantizing, loading, moving); a layer the kernel cannot run is remembered too."""
    if not isinstance(layer._modules["self_attn"], GQAttention):
        return None
    key = _key(layer)
    cached = layer.__dict__.get("_step_plan")
    if cached is None or cached[0] != key:
        cached = (key, _make_plan(layer))
        layer.__dict__["_step_plan"] = cached
    return cached[1]


def fused_layer_step(
    layer: nn.Module,
    x: torch.Tensor,
    rope: tuple[torch.Tensor, torch.Tensor],
    cache: KVCache | None,
) -> torch.Tensor | None:
    """``layer(x, rope, cache)`` in one kernel call, or None when the step is not one it serves.

    Args:
        layer: a :class:`~omnispeech.core.transformer.DecoderLayer` whose MLP is the dense
            SwiGLU (the caller checks; a mixture of experts has other products).
        x: ``[1, T, hidden]``, ``T`` new positions (at most ``MAX_ROWS`` of the kernel).
        rope: ``(cos, sin)`` ``[1, T, head_dim]`` at the new positions.
        cache: the layer's cache; the new keys and values are appended.

    Returns:
        ``[1, T, hidden]`` float32, or None.
    """
    if cache is None or cache.pad is not None or x.shape[0] != 1:
        return None
    if x.dtype != torch.float32 or x.device.type != "cpu" or cache.keys.dtype != torch.float32:
        return None
    rows = x.shape[1]
    if (x.requires_grad and torch.is_grad_enabled()) or cache.length + rows > cache.capacity:
        return None
    kernel = _step_kernel()
    if kernel is None or rows > kernel.MAX_ROWS:
        return None
    plan = _plan(layer)
    if plan is None:
        return None
    norms, eps, weights, n_out, heads = plan
    hidden = x.shape[-1]
    out = torch.empty(1, rows, hidden)
    cos, sin = rope
    kernel.layer_step(
        x.detach().reshape(rows, hidden).contiguous().numpy(),
        norms,
        eps,
        weights,
        n_out,
        cache.keys[0].numpy(),
        cache.values[0].numpy(),
        cache.length,
        cos.reshape(rows, -1).float().contiguous().numpy(),
        sin.reshape(rows, -1).float().contiguous().numpy(),
        heads,
        out.view(rows, hidden).numpy(),
    )
    cache.length += rows
    return out
