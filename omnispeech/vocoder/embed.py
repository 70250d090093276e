"""From codes to the first hidden frames: the two released code embeddings.

- Qwen3-Omni: one table of ``K * codebook_size`` rows; codebook ``k`` uses rows offset by
  ``k * codebook_size``, and the K vectors of a frame are averaged.
- Qwen3-TTS 12 Hz: a split residual quantizer. Codebook vectors are stored as an EMA running sum
  and a usage count (vector = ``embedding_sum / max(cluster_usage, 1e-5)``); the semantic group
  (codebook 0) and the acoustic group (1..15) are each summed and projected by their own 1x1
  conv, and the two projections are added.

Both gather-and-reduce through :func:`omnispeech.kernels.codebook_embed`.
"""

from __future__ import annotations

import torch
from torch import nn

from omnispeech.kernels import codebook_embed
from omnispeech.vocoder.config import Code2WavConfig

# Smallest usage count divided by, as in the released quantizer.
USAGE_EPS = 1e-5


class MeanCodeEmbedding(nn.Module):
    """``codes [B, K, T]`` -> mean of the K codebook vectors ``[B, T, D]`` (Qwen3-Omni)."""

    def __init__(self, cfg: Code2WavConfig) -> None:
        super().__init__()
        k, size = cfg.num_quantizers, cfg.codebook_size
        self.weight = nn.Parameter(torch.zeros(k * size, cfg.hidden_size))
        offsets = torch.arange(k, dtype=torch.long, device="cpu") * size
        self.register_buffer("offsets", offsets, persistent=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return codebook_embed(self.weight, codes, self.offsets, 1.0 / codes.shape[1])


class _Codebook(nn.Module):
    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.embedding_sum = nn.Parameter(torch.zeros(size, dim))
        self.cluster_usage = nn.Parameter(torch.ones(size))


class _Layer(nn.Module):
    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self._codebook = _Codebook(size, dim)


class _LayerList(nn.Module):
    def __init__(self, n: int, size: int, dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Layer(size, dim) for _ in range(n))


class ResidualGroup(nn.Module):
    """``n`` residual codebooks of ``dim`` with 1x1 projections ``outer <-> dim``.

    ``input_proj`` belongs to encoding; decoding reads only ``output_proj``. It is kept so the
    released keys load strictly and a saved model stays complete.
    """

    def __init__(self, n: int, size: int, dim: int, outer: int) -> None:
        super().__init__()
        self.input_proj = nn.Conv1d(outer, dim, 1, bias=False)
        self.output_proj = nn.Conv1d(dim, outer, 1, bias=False)
        self.vq = _LayerList(n, size, dim)
        self.register_buffer(
            "offsets", torch.arange(n, dtype=torch.long, device="cpu") * size, persistent=False
        )
        self._table: torch.Tensor | None = None
        self._table_key: tuple[int, ...] = ()

    def table(self) -> torch.Tensor:
        """All codebook vectors stacked ``[n * size, dim]``, recomputed only when weights change."""
        params = [p for layer in self.vq.layers for p in layer._codebook.parameters()]
        key = tuple(x for p in params for x in (p.data_ptr(), p._version))
        if self._table is None or key != self._table_key:
            with torch.no_grad():
                self._table = torch.cat(
                    [
                        layer._codebook.embedding_sum
                        / layer._codebook.cluster_usage.clamp(min=USAGE_EPS)[:, None]
                        for layer in self.vq.layers
                    ]
                )
            self._table_key = key
        return self._table

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, n, T]`` -> ``[B, outer, T]``."""
        summed = codebook_embed(self.table(), codes, self.offsets, 1.0)  # [B, T, dim]
        return torch.matmul(self.output_proj.weight[:, :, 0], summed.transpose(1, 2))


class SplitResidualDequantizer(nn.Module):
    """``codes [B, K, T]`` -> ``[B, codebook_dim, T]`` (Qwen3-TTS 12 Hz ``decoder.quantizer``)."""

    def __init__(self, cfg: Code2WavConfig) -> None:
        super().__init__()
        half, n_sem = cfg.codebook_dim // 2, cfg.num_semantic_quantizers
        self.n_semantic = n_sem
        self.rvq_first = ResidualGroup(n_sem, cfg.codebook_size, half, cfg.codebook_dim)
        self.rvq_rest = ResidualGroup(
            cfg.num_quantizers - n_sem, cfg.codebook_size, half, cfg.codebook_dim
        )

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        first = self.rvq_first(codes[:, : self.n_semantic])
        return first + self.rvq_rest(codes[:, self.n_semantic :])
