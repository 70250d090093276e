"""The codec encoder: waveform -> residual codes (Qwen3-TTS 12 Hz tokenizer, Mimi-style).

``wav [B, 1, S]`` at 24 kHz -> causal SEANet (960x down, 25 Hz) -> causal transformer -> causal
stride-2 conv (12.5 Hz) -> split residual quantizer: codebook 0 quantizes one projection
("semantic"), codebooks 1.. quantize another projection of the same latent residually
("acoustic"). Module names follow the released checkpoint (``encoder.*`` in the tokenizer
folder), so its tensors load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.codec.config import CodecEncoderConfig
from omnispeech.core.rope import RotaryEmbedding, apply_rotary

# Smallest usage count divided by, as in the released quantizer.
USAGE_EPS = 1e-5


class StridedCausalConv(nn.Module):
    """Conv padded on the left by ``k_eff - stride``; on the right only as far as a partial last
    stride window needs, so ``L`` inputs give ``ceil(L / stride)`` outputs."""

    def __init__(  # noqa: PLR0913 - the conv's own hyper-parameters
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = True,
        replicate: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride, dilation=dilation, bias=bias)
        self.stride = stride
        self.effective = (kernel - 1) * dilation + 1
        self.left = self.effective - stride
        # The downsampling conv pads by repeating the first sample instead of with zeros.
        self.mode = "replicate" if replicate else "constant"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        frames = -(-(n - self.effective + self.left) // self.stride) + 1
        right = (frames - 1) * self.stride + self.effective - self.left - n
        return self.conv(F.pad(x, (self.left, max(0, right)), mode=self.mode))


class ResnetBlock(nn.Module):
    """``x + conv_1(elu(conv_k(elu(x))))`` with the hidden width ``dim / compress``."""

    def __init__(self, dim: int, hidden: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            [
                nn.ELU(),
                StridedCausalConv(dim, hidden, kernel, dilation=dilation),
                nn.ELU(),
                StridedCausalConv(hidden, dim, 1),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.block:
            h = layer(h)
        return x + h


class SEANetEncoder(nn.Module):
    """Conv k7 -> per ratio (reversed): resnet block(s), ELU, strided conv (channels x2) ->
    ELU -> conv to ``hidden_size``. ``[B, 1, S]`` -> ``[B, hidden, ceil(S / 960)]``."""

    def __init__(self, cfg: CodecEncoderConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [StridedCausalConv(1, cfg.num_filters, cfg.kernel_size)]
        dim = cfg.num_filters
        for ratio in reversed(cfg.ratios):
            for j in range(cfg.num_residual_layers):
                layers.append(
                    ResnetBlock(
                        dim,
                        dim // cfg.compress,
                        cfg.residual_kernel_size,
                        cfg.dilation_growth_rate**j,
                    )
                )
            layers += [nn.ELU(), StridedCausalConv(dim, 2 * dim, 2 * ratio, stride=ratio)]
            dim *= 2
        layers += [nn.ELU(), StridedCausalConv(dim, cfg.hidden_size, cfg.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class _Attention(nn.Module):
    def __init__(self, cfg: CodecEncoderConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        self.window = cfg.attention_window
        self.q_proj = nn.Linear(cfg.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, 1)
            v = v.repeat_interleave(self.heads // self.kv_heads, 1)
        if self.window is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            rel = torch.arange(t, device=x.device)[:, None] - torch.arange(t, device=x.device)
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=(rel >= 0) & (rel < self.window)
            )
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


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
        self.self_attn = _Attention(cfg)
        self.self_attn_layer_scale = _Scale(d)
        self.post_attention_layernorm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = _Mlp(d, cfg.intermediate_size)
        self.mlp_layer_scale = _Scale(d)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), rope))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class EncoderTransformer(nn.Module):
    """Pre-LayerNorm causal transformer with RoPE and LayerScale; ``[B, T, D]`` -> same."""

    def __init__(self, cfg: CodecEncoderConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)[None].expand(x.shape[0], -1)
        rope = self.rotary(positions, x.dtype)
        for layer in self.layers:
            x = layer(x, rope)
        return x


class _Codebook(nn.Module):
    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        # Stored as the released EMA statistics; the vectors are embed_sum / usage.
        self.register_buffer("embed_sum", torch.zeros(size, dim))
        self.register_buffer("cluster_usage", torch.ones(size))
        self.register_buffer("initialized", torch.ones(1))

    def vectors(self) -> torch.Tensor:
        return self.embed_sum / self.cluster_usage.clamp(min=USAGE_EPS)[:, None]


class _CodebookHolder(nn.Module):
    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.codebook = _Codebook(size, dim)


class ResidualQuantizer(nn.Module):
    """Project ``[B, D, T]`` to the codebook width, then pick the nearest vector layer by layer,
    each layer quantizing what the previous ones left."""

    def __init__(self, n: int, size: int, dim: int, outer: int) -> None:
        super().__init__()
        self.input_proj = nn.Conv1d(outer, dim, 1, bias=False)
        # Decoding only (the vocoder has its own copy of the codebooks); kept so keys load.
        self.output_proj = nn.Conv1d(dim, outer, 1, bias=False)
        self.layers = nn.ModuleList(_CodebookHolder(size, dim) for _ in range(n))

    def encode(self, latent: torch.Tensor, n: int) -> torch.Tensor:
        """``latent [B, D, T]`` -> codes ``[B, n, T]``."""
        b, _, t = latent.shape
        residual = self.input_proj(latent).transpose(1, 2).reshape(b * t, -1)
        codes = []
        for holder in self.layers[:n]:
            vectors = holder.codebook.vectors()
            idx = torch.cdist(residual[None], vectors[None])[0].argmin(-1)
            residual = residual - vectors[idx]
            codes.append(idx.view(b, t))
        return torch.stack(codes, dim=1)


class SplitQuantizer(nn.Module):
    """Semantic codebook(s) and acoustic codebooks, each quantizing its own projection."""

    def __init__(self, cfg: CodecEncoderConfig) -> None:
        super().__init__()
        n_sem = cfg.num_semantic_quantizers
        args = (cfg.codebook_size, cfg.codebook_dim, cfg.hidden_size)
        self.n_semantic = n_sem
        self.semantic_residual_vector_quantizer = ResidualQuantizer(n_sem, *args)
        self.acoustic_residual_vector_quantizer = ResidualQuantizer(
            cfg.num_quantizers - n_sem, *args
        )

    def encode(self, latent: torch.Tensor, n: int) -> torch.Tensor:
        """``latent [B, D, T]`` -> the first ``n`` codes ``[B, n, T]``."""
        sem = self.semantic_residual_vector_quantizer.encode(latent, self.n_semantic)
        rest = self.acoustic_residual_vector_quantizer.encode(latent, n - self.n_semantic)
        return torch.cat((sem, rest), dim=1)


class CodecEncoderNet(nn.Module):
    """``wav [B, 1, S]`` -> codes ``[B, num_valid_quantizers, ceil(S / 1920)]``."""

    def __init__(self, cfg: CodecEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = SEANetEncoder(cfg)
        self.encoder_transformer = EncoderTransformer(cfg)
        stride = cfg.downsample_stride
        self.downsample = StridedCausalConv(
            cfg.hidden_size, cfg.hidden_size, 2 * stride, stride, bias=False, replicate=True
        )
        self.quantizer = SplitQuantizer(cfg)

    def latent(self, wav: torch.Tensor) -> torch.Tensor:
        """The continuous latent before quantization ``[B, hidden, T]``."""
        h = self.encoder(wav)
        h = self.encoder_transformer(h.transpose(1, 2)).transpose(1, 2)
        return self.downsample(h)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.quantizer.encode(self.latent(wav), self.cfg.num_valid_quantizers)
