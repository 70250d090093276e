"""The codec encoder: waveform -> residual codes (Qwen3-TTS 12 Hz tokenizer, Mimi-style).

``wav [B, 1, S]`` at 24 kHz -> causal SEANet (960x down, 25 Hz) -> causal transformer -> causal
stride-2 conv (12.5 Hz) -> split residual quantizer: codebook 0 quantizes one projection
("semantic"), codebooks 1.. quantize another projection of the same latent residually
("acoustic"). Module names follow the released checkpoint (``encoder.*`` in the tokenizer
folder), so its tensors load unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from omnispeech.codec.config import CodecEncoderConfig
from omnispeech.codec.layers import SEANetEncoder, StridedCausalConv
from omnispeech.codec.transformer import EncoderTransformer

# Smallest usage count divided by, as in the released quantizer.
USAGE_EPS = 1e-5
# cdist through ||x||^2 - 2 x.y + ||y||^2, the formula the reference uses at its lengths.
_MM = "use_mm_for_euclid_dist"


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
        if t == 0:
            return torch.zeros(b, n, 0, dtype=torch.long, device=latent.device)
        residual = self.input_proj(latent).transpose(1, 2).reshape(b * t, -1)
        codes = []
        for holder in self.layers[:n]:
            vectors = holder.codebook.vectors()
            # One distance formula whatever the number of frames (cdist's default switches
            # to another one past 25 rows), so a frame's code never depends on how the
            # stream was cut.
            dist = torch.cdist(residual[None], vectors[None], compute_mode=_MM)
            idx = dist[0].argmin(-1)
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
    """``wav [B, 1, S]`` (24 kHz samples) -> codes ``[B, K, ceil(S / 1920)]`` at 12.5 Hz,
    ``K = num_valid_quantizers``.

    Every stage is causal and streams (see :mod:`omnispeech.codec.layers` and
    :mod:`omnispeech.codec.transformer`): inside ``streaming()`` :meth:`latent` returns the
    latent frames made final by the new samples and :meth:`flush_latent` the last ones; outside,
    :meth:`latent` runs the same code on a fresh state over the whole input.
    """

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
        """Samples ``[B, 1, n]`` -> the continuous latent before quantization ``[B, hidden, m]``
        (all ``ceil(n / 1920)`` frames offline; the frames now final while streaming)."""
        return self._rest(self.encoder(wav), self.downsample)

    def flush_latent(self) -> torch.Tensor:
        """End the streams -> the last latent frames ``[B, hidden, m]`` (m <= 1).

        The SEANet flushes its partial strides; the frames that come out go through the
        transformer and are the last input of the downsampling conv's flush.
        """
        return self._rest(self.encoder.flush(), self.downsample.flush)

    def _rest(
        self, frames: torch.Tensor, downsample: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """SEANet frames -> transformer -> ``downsample`` (push, or the conv's flush)."""
        h = self.encoder_transformer(frames.transpose(1, 2)).transpose(1, 2)
        return downsample(h)

    def quantize(self, latent: torch.Tensor) -> torch.Tensor:
        """``latent [B, hidden, T]`` -> codes ``[B, K, T]`` int64 (each frame on its own)."""
        return self.quantizer.encode(latent, self.cfg.num_valid_quantizers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, 1, S]`` -> codes ``[B, K, ceil(S / 1920)]``."""
        return self.quantize(self.latent(wav))
