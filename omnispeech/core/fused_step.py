"""A whole decoder layer per Numba call for the decoding steps of int4 models.

:class:`omnispeech.core.transformer.DecoderLayer` asks :func:`fused_layer_step` first; it answers
None unless the step is one it serves, and the layer then runs module by module. It serves one
stream at a few new positions (a speech frame; a frame and its text), float32 activations, no
gradient, on a CPU where our int4 kernel runs, in a layer whose seven products are
:class:`~omnispeech.core.quant.Int4Linear` in the blocks layout (``quantize_int4`` makes them)
and whose MLP is the dense SwiGLU. The arithmetic is
:mod:`omnispeech.kernels.numba_int4_step`'s.

:class:`~omnispeech.core.transformer.DecoderStack` asks :func:`fused_stack_step` first, which
serves the same steps through all of a stack's layers in a single call when every layer is
one the layer kernel runs.
"""

from __future__ import annotations

import importlib
import weakref
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


# Plans per layer and per stack. Kept beside the modules rather than on them: a copy of a
# module (``copy.deepcopy``) must not inherit a plan, whose arrays and addresses point into the
# original's tensors; an entry goes when its module does.
_PLANS: weakref.WeakKeyDictionary[nn.Module, tuple] = weakref.WeakKeyDictionary()


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
        # (a mixture of experts has none of the MLP's three: its plan is None)
        linear = mods[parent]._modules.get(name)
        buffers = linear._buffers if linear is not None else {}
        key += (id(linear), id(buffers.get("weight")), id(buffers.get("scale_zeros")))
    return tuple(key)


def _make_plan(layer: DecoderLayer) -> tuple | None:
    """The kernel's arguments that depend on the weights alone (numpy views, no copies), or
    None when the layer is not one the kernel runs (float or other-layout products, biases,
    16-bit norms)."""
    from omnispeech.core.transformer import SwiGLU  # (that module imports this one)

    attn, mlp = layer.self_attn, layer.mlp
    if not isinstance(mlp, SwiGLU):
        return None  # e.g. a mixture of experts: other products
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


def layer_plan(layer: nn.Module) -> tuple | None:
    """The layer's weights as the layer kernels take them, ``(norms, eps, weights, n_out,
    heads)``, or None when they cannot run it (see :func:`_make_plan`).

    Kept for the layer and remade when a module or tensor it reads was replaced (quantizing,
    loading, moving); a layer the kernel cannot run is remembered too."""
    attn = layer._modules["self_attn"]
    if not isinstance(attn, GQAttention) or not isinstance(attn._modules["q_proj"], Int4Linear):
        # A float layer (the usual model) answers here, before the 25 lookups of its key: a
        # decoding step asks once per layer.
        return None
    key = _key(layer)
    cached = _PLANS.get(layer)
    if cached is None or cached[0] != key:
        cached = (key, _make_plan(layer))
        _PLANS[layer] = cached
    return cached[1]


def _serving_kernel(x: torch.Tensor, cache: KVCache) -> ModuleType | None:
    """The layer kernel's module when it serves a step of input ``x`` ``[B, T, H]`` into
    ``cache`` (one stream, float32 on the CPU, no padding or gradient, room in the cache, few
    positions), else None."""
    if cache.pad is not None or x.shape[0] != 1:
        return None
    if x.dtype != torch.float32 or x.device.type != "cpu" or cache.keys.dtype != torch.float32:
        return None
    rows = x.shape[1]
    if (x.requires_grad and torch.is_grad_enabled()) or cache.length + rows > cache.capacity:
        return None
    kernel = _step_kernel()
    if kernel is None or rows > kernel.MAX_ROWS:
        return None
    return kernel


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
    if cache is None:
        return None
    kernel = _serving_kernel(x, cache)
    if kernel is None:
        return None
    rows = x.shape[1]
    plan = layer_plan(layer)
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


def fused_stack_step(
    layers: nn.ModuleList,
    x: torch.Tensor,
    rope: tuple[torch.Tensor, torch.Tensor],
    caches: list[KVCache],
) -> torch.Tensor | None:
    """Every layer of a decoder stack in one kernel call (``x`` through each ``layer(x, rope,
    cache)`` in turn), or None when the step is not one :func:`fused_layer_step` serves in
    every layer, or the layers differ in their epsilon or head count.

    Args:
        layers: the stack's :class:`~omnispeech.core.transformer.DecoderLayer` modules.
        x: ``[1, T, hidden]``.
        rope: ``(cos, sin)`` ``[1, T, head_dim]`` at the new positions.
        caches: one cache per layer, all holding the same positions.

    Returns:
        ``[1, T, hidden]`` float32 (before the stack's final norm), or None.
    """
    kernel = _serving_kernel(x, caches[0])
    if kernel is None:
        return None
    plan = stack_plan(layers)
    if plan is None:
        return None
    table, eps, heads = plan
    pos = caches[0].length
    shape = caches[0].keys.shape
    if any(kv.length != pos or kv.keys.shape != shape for kv in caches):
        return None
    rows, hidden = x.shape[1], x.shape[2]
    cos, sin = rope
    out = kernel.stack_step(
        x.detach().reshape(rows, hidden).contiguous().numpy(),
        table,
        kernel.cache_addresses(
            [kv.keys[0].numpy() for kv in caches], [kv.values[0].numpy() for kv in caches]
        ),
        tuple(shape[1:]),
        eps,
        pos,
        cos.reshape(rows, -1).float().contiguous().numpy(),
        sin.reshape(rows, -1).float().contiguous().numpy(),
        heads,
    )
    for kv in caches:
        kv.length += rows
    return torch.from_numpy(out).view(1, rows, hidden)


def stack_plan(layers: nn.ModuleList) -> tuple | None:
    """``(table, eps, heads)`` of a stack for :func:`fused_stack_step` and the code predictor's
    frame kernel: ``table`` is the layers' :func:`~omnispeech.kernels.numba_int4_step.stack_table`
    (addresses into each layer's :func:`layer_plan`); None when a layer has no plan or the
    layers differ in ``eps`` or ``heads``.

    Kept for the module list with the layer plans it points into (which keeps their arrays
    alive), and remade when any of them was remade."""
    plans = []
    for layer in layers:
        plan = layer_plan(layer)
        if plan is None:
            return None
        plans.append(plan)
    if not plans:
        return None
    key = tuple(id(p) for p in plans)
    cached = _PLANS.get(layers)
    if cached is not None and cached[0] == key:
        return cached[2]
    eps, heads = plans[0][1], plans[0][4]
    plan = None
    if all(p[1] == eps and p[4] == heads for p in plans):
        plan = (_step_kernel().stack_table([(p[0], p[2], p[3]) for p in plans]), eps, heads)
    _PLANS[layers] = (key, plans, plan)
    return plan
