"""The codec encoder's causal transformer, streaming with a KV cache.

Frame ``i`` attends to every earlier frame (``attention_window`` None, as the released encoder
runs) or to the frames ``i - window + 1 .. i``. While streaming, each attention layer keeps the
rotated keys and values of the frames seen so far:

- without a window the cache grows with the stream; its capacity doubles when full, so appending
  costs amortized O(1) copies per frame and a push costs attention over the cache only;
- with a window it keeps only the last ``window - 1`` frames (moved to the front after each
  call), so its memory is bounded by the window plus the largest call.

RoPE positions continue from the frames seen so far. Outside ``streaming()`` the same code runs
on an empty cache, which makes offline encoding one call of plain causal attention.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.codec.config import CodecEncoderConfig
from omnispeech.core.rope import RotaryEmbedding, apply_rotary
from omnispeech.core.streaming import StreamingModule, StreamingState


@dataclasses.dataclass
class _KVState(StreamingState):
    keys: torch.Tensor  # [B, H_kv, capacity, D] rotated; slots < length are valid, oldest first
    values: torch.Tensor  # [B, H_kv, capacity, D]
    length: int = 0  # valid slots: the most recent frames seen


class CachedAttention(StreamingModule[_KVState]):
    """Causal multi-head attention with RoPE; weights ``{q,k,v,o}_proj`` without bias.

    Args:
        hidden_size: model width.
        num_heads: query heads H.
        num_kv_heads: key/value heads H_kv (H must be a multiple of it).
        head_dim: per-head size D.
        window: frames a query sees (itself included), or None for all earlier frames.
    """

    def __init__(  # noqa: PLR0913 - one argument per architectural dimension
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        window: int | None,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads {num_heads} is not a multiple of {num_kv_heads}")
        if window is not None and window < 1:
            raise ValueError(f"attention window must be >= 1, got {window}")
        self.heads, self.kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.window = window
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=False)

    def _init_streaming_state(self, batch_size: int) -> _KVState:
        w = self.q_proj.weight
        empty = w.new_zeros(batch_size, self.kv_heads, 0, self.head_dim)
        return _KVState(batch_size, empty, empty.clone())

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], state: _KVState
    ) -> torch.Tensor:
        """``x [B, T, hidden]`` at the positions ``rope`` was built for -> ``[B, T, hidden]``.

        The new keys/values are appended to ``state``; the queries attend to the cache and,
        causally, to each other.
        """
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        past = state.length
        k, v = _append(state, k, v)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, 1)
            v = v.repeat_interleave(self.heads // self.kv_heads, 1)
        if self.window is None and (past == 0 or t == 1):
            # Top-left causal alignment is right when nothing is cached; one query sees all.
            out = F.scaled_dot_product_attention(q, k, v, is_causal=past == 0 and t > 1)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=self._mask(past, t, x.device))
        if self.window is not None and state.length > self.window - 1:
            _keep_last(state, self.window - 1)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))

    def _mask(self, past: int, t: int, device: torch.device) -> torch.Tensor:
        """``[t, past + t]``, True where query ``past + i`` may see cached slot ``j``."""
        rel = torch.arange(past, past + t, device=device)[:, None] - torch.arange(
            past + t, device=device
        )
        mask = rel >= 0
        return mask if self.window is None else mask & (rel < self.window)


def _append(state: _KVState, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Write ``k``/``v`` ``[B, H_kv, T, D]`` after the cached frames; all valid slots (views)."""
    end = state.length + k.shape[2]
    capacity = state.keys.shape[2]
    if end > capacity:
        # Doubling keeps the copies amortized O(1) per frame however the stream is chunked.
        capacity = max(end, 2 * capacity)
        for name in ("keys", "values"):
            old = getattr(state, name)
            new = old.new_zeros(*old.shape[:2], capacity, old.shape[3])
            new[:, :, : state.length] = old[:, :, : state.length]
            setattr(state, name, new)
    state.keys[:, :, state.length : end] = k
    state.values[:, :, state.length : end] = v
    state.length = end
    return state.keys[:, :, :end], state.values[:, :, :end]


def _keep_last(state: _KVState, n: int) -> None:
    """Keep only the last ``n`` frames (moved to the front): all a window lets later frames see."""
    start = state.length - n
    for buf in (state.keys, state.values):
        buf[:, :, :n] = buf[:, :, start : state.length].clone()
    state.length = n


class _Scale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class _Mlp(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, inner, bias=False)
        self.fc2 = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Layer(nn.Module):
    def __init__(self, cfg: CodecEncoderConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.input_layernorm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.self_attn = CachedAttention(
            d,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
            cfg.attention_window,
        )
        self.self_attn_layer_scale = _Scale(d)
        self.post_attention_layernorm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = _Mlp(d, cfg.intermediate_size)
        self.mlp_layer_scale = _Scale(d)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cache: _KVState
    ) -> torch.Tensor:
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), rope, cache))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


@dataclasses.dataclass
class _PositionState(StreamingState):
    seen: int = 0  # frames consumed so far: the RoPE position of the next frame


class EncoderTransformer(StreamingModule[_PositionState]):
    """Pre-LayerNorm causal transformer with RoPE and LayerScale: ``[B, T, D]`` -> same.

    Each call continues the streams (positions, KV caches) while streaming; outside
    ``streaming()`` a call is a whole sequence. It has no look-ahead, so a stream's end needs
    no flush.
    """

    def __init__(self, cfg: CodecEncoderConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)

    def _init_streaming_state(self, batch_size: int) -> _PositionState:
        return _PositionState(batch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Frames ``[B, T, D]`` (T >= 0) -> ``[B, T, D]``."""
        b, t, _ = x.shape
        state = self.streaming_state
        if state is None:
            seen = 0
            caches = [layer.self_attn._init_streaming_state(b) for layer in self.layers]
        else:
            seen = state.seen
            caches = [layer.self_attn.streaming_state for layer in self.layers]
        if t == 0:
            return x
        positions = torch.arange(seen, seen + t, device=x.device)[None].expand(b, -1)
        rope = self.rotary(positions, x.dtype)
        for layer, cache in zip(self.layers, caches, strict=True):
            x = layer(x, rope, cache)
        if state is not None:
            state.seen += t
        return x
