"""The Qwen3-Omni talker's mixture of experts: top-k routed SwiGLU experts + a gated shared one.

Weights keep the checkpoint layout (one ``nn.Linear`` per expert, ``experts.{e}.gate_proj``),
so the released safetensors load without fusing. Routing follows the released numerics: the
router softmax runs in float32 over all experts, the top-k probabilities are renormalised when
``norm_topk_prob`` is set and cast back to the activation dtype.

:meth:`SharedExpertMoE.forward` picks each token's experts on the host (one call per chosen
expert). :meth:`SharedExpertMoE.fixed` computes the same without reading the routing back: the
experts' weights are stacked once into ``[E, ...]`` tensors (each expert's parameters then
become views of them, so the weights are not held twice) and every token gathers its ``k``
experts by index, so a CUDA graph can capture a decoding step of the talker.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.core.transformer import SwiGLU
from omnispeech.errors import InputError


class SharedExpertMoE(nn.Module):
    """``[B, T, hidden]`` -> ``[B, T, hidden]``: routed experts plus ``sigmoid(g(x)) * shared(x)``.

    Args:
        hidden_size: model width.
        num_experts: routed experts E.
        top_k: experts per token.
        expert_size: intermediate width of a routed expert.
        shared_size: intermediate width of the shared expert.
        norm_topk_prob: renormalise the top-k router probabilities to sum to 1.
    """

    def __init__(  # noqa: PLR0913 - each argument is one architectural dimension
        self,
        hidden_size: int,
        num_experts: int,
        top_k: int,
        expert_size: int,
        shared_size: int,
        norm_topk_prob: bool,
    ) -> None:
        super().__init__()
        self.top_k = top_k
        self.norm_topk_prob = norm_topk_prob
        self.gate = nn.Linear(hidden_size, num_experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(hidden_size, expert_size) for _ in range(num_experts))
        self.shared_expert = SwiGLU(hidden_size, shared_size)
        self.shared_expert_gate = nn.Linear(hidden_size, 1, bias=False)
        # (gate [E, I, H], up [E, I, H], down [E, H, I]) for :meth:`fixed`, made on first use
        self._stacked: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``[N, hidden]`` -> (weights ``[N, k]`` in x's dtype, expert ids ``[N, k]``)."""
        logits = self.gate(x)
        probs = F.softmax(logits, dim=-1, dtype=torch.float32)
        weights, ids = torch.topk(probs, self.top_k, dim=-1)
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights.to(logits.dtype), ids

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        weights, ids = self.route(flat)
        out = torch.zeros_like(flat)
        if flat.shape[0] == 1:
            # One token per step while generating: call its k experts directly (no bookkeeping).
            for slot, e in enumerate(ids[0].tolist()):
                out += weights[0, slot] * self.experts[e](flat)
        else:
            # Group the tokens by expert so each expert runs once on all of its tokens.
            for e in torch.unique(ids).tolist():
                token, slot = torch.nonzero(ids == e, as_tuple=True)
                contrib = self.experts[e](flat[token]) * weights[token, slot, None]
                out.index_add_(0, token, contrib)
        shared = torch.sigmoid(self.shared_expert_gate(flat)) * self.shared_expert(flat)
        return (out + shared).reshape(shape)

    def fixed(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with no host synchronisation and shapes that depend only on ``x``'s:
        ``[B, T, hidden]`` -> the same shape. Meant for decoding steps (few tokens): each token
        gathers the weights of its ``k`` experts, ``k * 3 * I * hidden`` values."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        weights, ids = self.route(flat)
        gate, up, down = self.stacked()
        column = flat[:, None, :, None]  # [N, 1, H, 1]
        g = (gate[ids] @ column).squeeze(-1)  # [N, k, I]
        u = (up[ids] @ column).squeeze(-1)
        y = (down[ids] @ (F.silu(g) * u)[..., None]).squeeze(-1)  # [N, k, H]
        out = torch.zeros_like(flat)
        for slot in range(self.top_k):  # the order forward() adds them in
            out = out + weights[:, slot, None] * y[:, slot]
        shared = torch.sigmoid(self.shared_expert_gate(flat)) * self.shared_expert(flat)
        return (out + shared).reshape(shape)

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The routed experts' weights as ``(gate [E, I, H], up [E, I, H], down [E, H, I])``.

        Made once; the experts' own parameters are then re-pointed to views of these, so the
        module holds each weight once and a state dict keeps its per-expert keys. Moving or
        casting the module breaks the sharing (each parameter moves alone): the next call sees
        that and stacks again.

        Raises:
            InputError: the experts are quantized (the fixed step needs their float weights).
        """
        first = self.experts[0].gate_proj
        if self._stacked is not None and self._stacked[0].data_ptr() == first.weight.data_ptr():
            return self._stacked
        projections = ("gate_proj", "up_proj", "down_proj")
        layers = [[getattr(e, name) for e in self.experts] for name in projections]
        if not all(isinstance(layer, nn.Linear) for column in layers for layer in column):
            raise InputError("the fixed-shape step needs float (not quantized) expert weights")
        with torch.no_grad():
            stacks = tuple(torch.stack([layer.weight for layer in column]) for column in layers)
            for column, stack in zip(layers, stacks, strict=True):
                for e, layer in enumerate(column):
                    layer.weight = nn.Parameter(stack[e], requires_grad=layer.weight.requires_grad)
        self._stacked = stacks  # type: ignore[assignment]
        return self._stacked
