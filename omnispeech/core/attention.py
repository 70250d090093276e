"""Attention with a preallocated KV cache.

:class:`KVCache` is written in place: memory is reserved once for ``capacity`` positions, so a
decode step allocates nothing and its cost depends on the attended length only. Streams in one
batch advance in lockstep (the same number of positions each call). Independent requests of
different lengths share a batch by left padding: stream ``b`` starts ``pad[b]`` positions late,
its keys before that are masked and its positions count from its own first input, so each
stream computes what it would alone (up to float rounding of the masked softmax).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.core.linear import StepLinear, project
from omnispeech.core.norm import RMSNorm
from omnispeech.core.rope import apply_rotary


class KVCache:
    """Keys and values of one attention layer, ``[B, H_kv, capacity, D]`` each.

    Args:
        batch_size: number of streams B.
        num_kv_heads: key/value heads H_kv.
        head_dim: D.
        capacity: most positions the cache can hold.
        device, dtype: where and in what precision the buffers live.
        pad: ``[B]`` int64 left-padding positions of each stream, or None (no padding).
    """

    def __init__(  # noqa: PLR0913 - the buffer's shape, placement and padding
        self,
        batch_size: int,
        num_kv_heads: int,
        head_dim: int,
        capacity: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        pad: torch.Tensor | None = None,
    ) -> None:
        shape = (batch_size, num_kv_heads, capacity, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0
        if pad is not None and pad.shape != (batch_size,):
            raise ValueError(f"pad must have shape [{batch_size}], got {list(pad.shape)}")
        self.pad = pad

    def select(self, index: torch.Tensor) -> None:
        """Keep only the streams ``index`` ``[B']`` (e.g. drop finished ones); copies."""
        self.keys = self.keys[index]
        self.values = self.values[index]
        if self.pad is not None:
            self.pad = self.pad[index]

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k``/``v`` ``[B, H_kv, T, D]``; return all keys/values so far (views)."""
        t = k.shape[2]
        end = self.length + t
        if end > self.capacity:
            raise RuntimeError(
                f"KV cache full: {end} positions needed, capacity {self.capacity}; "
                "build the cache with a larger capacity"
            )
        self.keys[:, :, self.length : end] = k
        self.values[:, :, self.length : end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


def causal_mask(q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[q_len, k_len]`` mask (True = may attend) for queries at the last ``q_len``
    positions of a ``k_len`` sequence."""
    offset = k_len - q_len
    q_pos = torch.arange(q_len, device=device)[:, None] + offset
    return torch.arange(k_len, device=device)[None, :] <= q_pos


def padded_causal_mask(q_len: int, k_len: int, pad: torch.Tensor) -> torch.Tensor:
    """Boolean ``[B, 1, q_len, k_len]`` mask for left-padded streams: causal, and no key of
    stream ``b`` before ``pad[b]``.

    A query inside the padding sees the padding before it (its output is never used): a row
    with no visible key would give NaN, and a NaN value at a padded key would reach the real
    rows through ``0 * NaN``.
    """
    q_pos = torch.arange(q_len, device=pad.device)[:, None] + (k_len - q_len)  # [T, 1]
    k_pos = torch.arange(k_len, device=pad.device)[None, :]  # [1, K]
    valid = k_pos[None] >= pad[:, None, None]  # [B, 1, K]
    in_pad = q_pos[None] < pad[:, None, None]  # [B, T, 1]
    return ((k_pos <= q_pos)[None] & (valid | in_pad))[:, None]


class GQAttention(nn.Module):
    """Causal grouped-query self-attention with per-head q/k RMSNorm and RoPE (Qwen3).

    Weight names follow the released checkpoints: ``q_proj``, ``k_proj``, ``v_proj``,
    ``o_proj``, ``q_norm``, ``k_norm``.

    Args:
        hidden_size: model width.
        num_heads: query heads H.
        num_kv_heads: key/value heads H_kv (H must be a multiple of it).
        head_dim: per-head size D.
        eps: RMSNorm epsilon of q/k norms.
        bias: whether q/k/v/o projections carry a bias.
    """

    def __init__(  # noqa: PLR0913 - each argument is one architectural dimension
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        eps: float = 1e-6,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads {num_heads} is not a multiple of {num_kv_heads}")
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.q_proj = StepLinear(hidden_size, num_heads * head_dim, bias=bias)
        self.k_proj = StepLinear(hidden_size, num_kv_heads * head_dim, bias=bias)
        self.v_proj = StepLinear(hidden_size, num_kv_heads * head_dim, bias=bias)
        self.o_proj = StepLinear(num_heads * head_dim, hidden_size, bias=bias)
        self.q_norm = RMSNorm(head_dim, eps)
        self.k_norm = RMSNorm(head_dim, eps)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """``x`` ``[B, T, hidden]`` at the positions ``rope`` was built for -> ``[B, T, hidden]``.

        With a cache, the new keys/values are appended and the queries attend to everything
        cached so far (causally within the new positions).
        """
        B, T, _ = x.shape
        q, k, v = project(x, self.q_proj, self.k_proj, self.v_proj)
        q = self.q_norm(q.view(B, T, self.num_heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(k.view(B, T, self.num_kv_heads, self.head_dim)).transpose(1, 2)
        v = v.view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v)
        k_len = k.shape[2]
        if cache is not None and cache.pad is not None:
            mask = padded_causal_mask(T, k_len, cache.pad)
        elif T == 1:
            mask = None  # a single new query may see every cached position
        elif k_len == T:
            mask = None
        else:
            mask = causal_mask(T, k_len, x.device)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None and T > 1,
            enable_gqa=self.num_heads != self.num_kv_heads,
        )
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))
