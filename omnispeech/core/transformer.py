"""A lean Qwen3 dense decoder: GQA with q/k-norm, RoPE, SwiGLU, pre-RMSNorm.

Used by the ASR text decoder, the talker and the code predictor. Module and weight names match the
released checkpoints below their prefix (``embed_tokens``, ``layers.N.self_attn.q_proj``,
``layers.N.mlp.gate_proj``, ``norm`` ...), so a state dict loads without renaming.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.config import FrozenConfig
from omnispeech.core.attention import GQAttention, KVCache
from omnispeech.core.fused_step import fused_layer_step, fused_stack_step
from omnispeech.core.linear import StepLinear, project
from omnispeech.core.norm import RMSNorm
from omnispeech.core.rope import RotaryEmbedding
from omnispeech.kernels import linear


@dataclasses.dataclass(frozen=True)
class DecoderConfig(FrozenConfig):
    """Shape of a Qwen3 dense decoder.

    ``head_dim`` is explicit: Qwen3 models use 128 whatever ``hidden_size / num_heads`` is.
    """

    vocab_size: int = 151936
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_layers: int = 28
    num_heads: int = 16
    num_kv_heads: int = 8
    head_dim: int = 128
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_positions: int = 65536  # RoPE is defined anywhere; this bounds caches and prompts
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even (RoPE rotates pairs)")


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))`` without biases; ``layer`` is the layer class of the
    three projections (an ``nn.Linear`` subclass such as
    :class:`omnispeech.core.linear.StepLinear`)."""

    def __init__(
        self, hidden_size: int, intermediate_size: int, layer: type[nn.Linear] = nn.Linear
    ) -> None:
        super().__init__()
        self.gate_proj = layer(hidden_size, intermediate_size, bias=False)
        self.up_proj = layer(hidden_size, intermediate_size, bias=False)
        self.down_proj = layer(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = project(x, self.gate_proj, self.up_proj)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``.

    ``mlp`` replaces the dense SwiGLU (the Qwen3-Omni talker puts a mixture of experts there);
    it maps ``[B, T, hidden]`` to the same shape.
    """

    def __init__(self, cfg: DecoderConfig, mlp: nn.Module | None = None) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = GQAttention(
            cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.rms_norm_eps
        )
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = (
            mlp if mlp is not None else SwiGLU(cfg.hidden_size, cfg.intermediate_size, StepLinear)
        )

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cache: KVCache | None
    ) -> torch.Tensor:
        # One-token steps of int4 layers: the whole layer in one kernel call (None otherwise).
        fused = fused_layer_step(self, x, rope, cache) if isinstance(self.mlp, SwiGLU) else None
        if fused is not None:
            return fused
        x = x + self.self_attn(self.input_layernorm(x), rope, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class DecoderCache:
    """One :class:`KVCache` per layer plus the shared position counter."""

    def __init__(self, layers: list[KVCache]) -> None:
        self.layers = layers

    @property
    def length(self) -> int:
        """Positions already cached (the position of the next input)."""
        return self.layers[0].length

    @property
    def pad(self) -> torch.Tensor | None:
        """``[B]`` left-padding positions per stream (see :class:`KVCache`), or None."""
        return self.layers[0].pad

    def select(self, index: torch.Tensor) -> None:
        """Keep only the streams ``index`` ``[B']``, in that order (drop finished ones)."""
        for layer in self.layers:
            layer.select(index)

    def truncate(self, length: int) -> None:
        """Forget every position from ``length`` on (rollback; the memory stays reserved).

        A causal decoder's keys and values for a prefix do not depend on what follows it, so
        a caller can rewind to a shared prefix and continue differently.
        """
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} positions to {length}")
        for layer in self.layers:
            layer.length = length


class DecoderStack(nn.Module):
    """``num_layers`` Qwen3 blocks and the final RMSNorm, fed with embeddings.

    The speech models embed their inputs themselves (sums of code and text embeddings), so the
    stack owns no token embedding; :class:`Decoder` adds the text one.

    Args:
        cfg: the decoder shape.
        mlp_factory: builds each layer's MLP (default: the dense SwiGLU).
    """

    def __init__(
        self, cfg: DecoderConfig, mlp_factory: Callable[[], nn.Module] | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(
            DecoderLayer(cfg, mlp_factory() if mlp_factory is not None else None)
            for _ in range(cfg.num_layers)
        )
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)

    def new_cache(
        self,
        batch_size: int,
        capacity: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        pad: torch.Tensor | None = None,
    ) -> DecoderCache:
        """A preallocated cache for ``batch_size`` streams of up to ``capacity`` positions.

        ``pad`` ``[B]`` (int64) batches requests of different lengths: stream ``b``'s input
        is left-padded by ``pad[b]`` positions, which are masked and not counted in its
        positions (see :class:`KVCache`).
        """
        ref = self.norm.weight
        if pad is not None:
            pad = pad.to(device=device or ref.device, dtype=torch.long)
        return DecoderCache(
            [
                KVCache(
                    batch_size,
                    self.cfg.num_kv_heads,
                    self.cfg.head_dim,
                    capacity,
                    device or ref.device,
                    dtype or ref.dtype,
                    pad,
                )
                for _ in self.layers
            ]
        )

    def forward(
        self, inputs_embeds: torch.Tensor, cache: DecoderCache | None = None
    ) -> torch.Tensor:
        """``inputs_embeds`` ``[B, T, hidden]`` -> final-normed hidden states ``[B, T, hidden]``.

        Positions continue from ``cache.length`` (0 without a cache), less each stream's
        left padding when the cache has some.
        """
        B, T, _ = inputs_embeds.shape
        start = cache.length if cache is not None else 0
        pad = cache.pad if cache is not None else None
        if pad is None:
            rope = self._rope_tables(start, T, inputs_embeds)
        else:
            positions = torch.arange(start, start + T, device=inputs_embeds.device).expand(B, T)
            # RoPE scores depend on position differences only, so this shift changes rounding
            # alone; it gives each stream the very angles of its run without a batch.
            positions = (positions - pad[:, None]).clamp_min(0)
            rope = self.rotary(positions, inputs_embeds.dtype)
        x = inputs_embeds
        if cache is not None and pad is None:
            # One stream's decoding step of int4 layers: the whole stack in one kernel call.
            fused = fused_stack_step(self.layers, x, rope, cache.layers)
            if fused is not None:
                return self.norm(fused)
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, cache.layers[i] if cache is not None else None)
        return self.norm(x)

    def _rope_tables(
        self, start: int, T: int, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE tables ``[B, T, head_dim]`` at positions ``start`` .. ``start + T - 1``, sliced
        from tables kept for positions 0 .. P-1 (P doubles when outgrown).

        A decoding step asks for one position at a time, and making its table costs half a
        dozen small operations per step; the values are the same, since every position's
        angles are computed alike whatever else is in the batch.
        """
        end = start + T
        kept = self.__dict__.get("_rope_kept")
        if (
            kept is None
            or kept[0].shape[0] < end
            or kept[0].dtype != like.dtype
            or kept[0].device != like.device
        ):
            size = max(end, 2 * kept[0].shape[0] if kept is not None else 256)
            cos, sin = self.rotary(torch.arange(size, device=like.device)[None], like.dtype)
            kept = (cos[0], sin[0])
            self.__dict__["_rope_kept"] = kept
        B = like.shape[0]
        return kept[0][start:end][None].expand(B, T, -1), kept[1][start:end][None].expand(B, T, -1)


class Decoder(DecoderStack):
    """A text decoder: token embedding plus the :class:`DecoderStack`.

    The LM head is not part of this module: with tied embeddings it is ``embed_tokens`` itself
    (see :meth:`logits`), otherwise the owner keeps its own ``lm_head``.
    """

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__(cfg)
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied LM head: ``hidden`` ``[..., hidden]`` -> logits ``[..., vocab]``."""
        return linear(hidden, self.embed_tokens.weight)


def decoder_config_from_released(text_config: dict) -> DecoderConfig:
    """Translate a released Qwen3 ``text_config`` dict (either Qwen3-ASR layout).

    RoPE theta is read from ``rope_theta``, ``rope_parameters`` or ``rope_scaling``; the
    multimodal sections these configs may declare are irrelevant for text and speech, whose
    three position streams are equal.
    """
    rope = text_config.get("rope_parameters") or text_config.get("rope_scaling") or {}
    theta = text_config.get("rope_theta", rope.get("rope_theta", 1_000_000.0))
    hidden = text_config["hidden_size"]
    heads = text_config["num_attention_heads"]
    return DecoderConfig(
        vocab_size=text_config["vocab_size"],
        hidden_size=hidden,
        intermediate_size=text_config["intermediate_size"],
        num_layers=text_config["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=text_config.get("num_key_value_heads", heads),
        head_dim=text_config.get("head_dim") or hidden // heads,
        rope_theta=float(theta),
        rms_norm_eps=text_config.get("rms_norm_eps", 1e-6),
        max_positions=text_config.get("max_position_embeddings", 65536),
        tie_word_embeddings=text_config.get("tie_word_embeddings", True),
    )
