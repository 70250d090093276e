"""The vocoder's pre-transformer: causal sliding-window attention with LayerScale residuals.

Query ``i`` attends to keys ``i - window + 1 .. i`` (RoPE on absolute frame positions). The
streaming state of each layer is the window: the last ``window - 1`` rotated keys and values of
every stream, so a step costs the same whatever the history, and a call may hold any number of
frames (offline decoding is this same code over blocks of frames, which bounds its memory).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.core.linear import StepLinear
from omnispeech.core.norm import RMSNorm
from omnispeech.core.rope import RotaryEmbedding, apply_rotary
from omnispeech.core.streaming import StreamingModule, StreamingState
from omnispeech.core.transformer import SwiGLU
from omnispeech.vocoder.config import Code2WavConfig


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (weights ``scale``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


@dataclasses.dataclass
class _WindowState(StreamingState):
    keys: torch.Tensor  # [B, H_kv, window - 1, D], rotated; oldest first
    values: torch.Tensor  # [B, H_kv, window - 1, D]
    seen: torch.Tensor  # [B] frames consumed so far (the next frame's position)


class SlidingAttention(StreamingModule[_WindowState]):
    """Multi-head attention over a causal window; weights ``{q,k,v,o}_proj`` without bias."""

    def __init__(self, cfg: Code2WavConfig) -> None:
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.window = cfg.sliding_window
        inner, kv_inner = self.heads * self.head_dim, self.kv_heads * self.head_dim
        self.q_proj = StepLinear(cfg.hidden_size, inner, bias=False)
        self.k_proj = StepLinear(cfg.hidden_size, kv_inner, bias=False)
        self.v_proj = StepLinear(cfg.hidden_size, kv_inner, bias=False)
        self.o_proj = StepLinear(inner, cfg.hidden_size, bias=False)

    def _init_streaming_state(self, batch_size: int) -> _WindowState:
        w = self.q_proj.weight
        shape = (batch_size, self.kv_heads, self.window - 1, self.head_dim)
        return _WindowState(
            batch_size,
            w.new_zeros(shape),
            w.new_zeros(shape),
            torch.zeros(batch_size, dtype=torch.long, device=w.device),
        )

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        lengths: torch.Tensor | None,
        state: _WindowState,
    ) -> torch.Tensor:
        """``x [B, T, hidden]`` at positions ``state.seen + t`` -> ``[B, T, hidden]``.

        ``rope`` holds the cos/sin tables of those positions ``[B, T, head_dim]``, ``mask`` the
        visible window slots ``[B, T, window - 1 + T]`` (see :func:`window_mask`).
        """
        b, t, _ = x.shape
        past = self.window - 1
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        keys = torch.cat((state.keys, k), dim=2)  # [B, H_kv, past + T, D]
        values = torch.cat((state.values, v), dim=2)
        if past:
            # The new window: the last `past` slots before each stream's own end.
            n_new = torch.full((b,), t, device=x.device) if lengths is None else lengths
            idx = (n_new[:, None] + torch.arange(past, device=x.device))[:, None, :, None]
            idx = idx.expand(-1, self.kv_heads, -1, self.head_dim)
            # In place: state buffers keep their addresses (a CUDA graph replays on them).
            state.keys.copy_(keys.gather(2, idx))
            state.values.copy_(values.gather(2, idx))
        if self.kv_heads != self.heads:
            rep = self.heads // self.kv_heads
            keys, values = keys.repeat_interleave(rep, 1), values.repeat_interleave(rep, 1)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[:, None])
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


def window_mask(
    seen: torch.Tensor, t: int, past: int, lengths: torch.Tensor | None
) -> torch.Tensor:
    """Boolean ``[B, T, past + T]``: key slot ``j`` holds position ``seen - past + j``.

    A key is visible when it exists (position >= 0), is not in the query's future, lies within
    the window, and (for new frames) is a valid frame of the stream. Every query keeps at least
    its own slot so that padded rows never become all-masked (which would give NaN).
    """
    dev = seen.device
    q_pos = seen[:, None] + torch.arange(t, device=dev)[None, :]  # [B, T]
    k_pos = seen[:, None] - past + torch.arange(past + t, device=dev)[None, :]  # [B, past+T]
    rel = q_pos[:, :, None] - k_pos[:, None, :]
    mask = (rel >= 0) & (rel <= past) & (k_pos[:, None, :] >= 0)
    if lengths is not None:
        new_valid = torch.arange(past + t, device=dev)[None, :] < (past + lengths)[:, None]
        mask &= new_valid[:, None, :]
        mask |= rel == 0
    return mask


class TransformerLayer(nn.Module):
    """Pre-norm: ``x + ls(attn(norm(x)))``, then ``x + ls(mlp(norm(x)))``."""

    def __init__(self, cfg: Code2WavConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = SlidingAttention(cfg)
        self.self_attn_layer_scale = LayerScale(cfg.hidden_size)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size, StepLinear)
        self.mlp_layer_scale = LayerScale(cfg.hidden_size)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        lengths: torch.Tensor | None,
        state: _WindowState,
    ) -> torch.Tensor:
        x = x + self.self_attn_layer_scale(
            self.self_attn(self.input_layernorm(x), rope, mask, lengths, state)
        )
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class PreTransformer(nn.Module):
    """``[B, T, latent]`` -> ``[B, T, latent]``; the tts12hz flavor projects to ``hidden`` and
    back (``input_proj`` / ``output_proj`` with bias)."""

    def __init__(self, cfg: Code2WavConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)
        self.projected = cfg.flavor == "tts12hz"
        if self.projected:
            self.input_proj = StepLinear(cfg.latent_dim, cfg.hidden_size)
            self.output_proj = StepLinear(cfg.hidden_size, cfg.latent_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Frames of this call ``[B, T, latent]``; ``lengths`` valid frames per stream."""
        b, t, _ = x.shape
        states = [layer.self_attn.streaming_state for layer in self.layers]
        if states[0] is None:  # offline: a fresh window per call
            states = [layer.self_attn._init_streaming_state(b) for layer in self.layers]
        seen = states[0].seen
        positions = seen[:, None] + torch.arange(t, device=x.device)[None, :]
        if self.projected:
            x = self.input_proj(x)
        rope = self.rotary(positions, x.dtype)
        # Every layer has seen the same frames, so one mask serves them all.
        mask = window_mask(seen, t, self.layers[0].self_attn.window - 1, lengths)
        for layer, state in zip(self.layers, states, strict=True):
            x = layer(x, rope, mask, lengths, state)
        advance = torch.full_like(seen, t) if lengths is None else lengths
        for state in states:
            state.seen.add_(advance)
        x = self.norm(x)
        return self.output_proj(x) if self.projected else x
