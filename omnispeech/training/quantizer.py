"""The trainable split residual quantizer, and its export to the inference layout.

Training uses ``vector_quantize_pytorch.ResidualVQ`` (EMA codebooks, k-means initialisation,
dead-code replacement, quantizer dropout, codebook statistics synced across processes). The
projections around it are the inference encoder's own modules (``input_proj`` /
``output_proj`` of ``CodecEncoderNet.quantizer``), so the only thing an export copies is the
codebook vectors: into the encoder's EMA buffers (``embed_sum`` with ``cluster_usage`` 1) and
into the decoder's dequantizer (``embedding_sum`` / ``cluster_usage``, plus the projections).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from omnispeech.errors import DependencyError


@dataclasses.dataclass(frozen=True)
class QuantizedLatent:
    """Result of quantizing a latent.

    Attributes:
        latent: ``[B, D, T]`` the dequantised latent (what the decoder's quantizer would output
            for ``codes``), with straight-through gradients to the encoder.
        codes: ``[B, K, T]`` int64; ``-1`` marks codebooks dropped this step.
        commitment: scalar commitment loss (encoder output pulled towards its codes).
    """

    latent: torch.Tensor
    codes: torch.Tensor
    commitment: torch.Tensor


def _residual_vq(layers: int, size: int, dim: int, ema: float, kmeans: int, **kw: object):
    try:
        from vector_quantize_pytorch import ResidualVQ
    except ImportError:
        raise DependencyError(
            "codec training needs vector-quantize-pytorch: pip install 'omnispeech[train]'"
        ) from None

    return ResidualVQ(
        dim=dim,
        num_quantizers=layers,
        codebook_size=size,
        decay=ema,
        kmeans_init=kmeans > 0,
        kmeans_iters=max(kmeans, 1),
        commitment_weight=1.0,
        **kw,
    )


class TrainableSplitQuantizer(nn.Module):
    """One semantic codebook and ``K - 1`` residual acoustic codebooks, each group quantizing
    its own projection of the latent (Mimi's split RVQ).

    Args:
        projections: the inference quantizer (``CodecEncoderNet.quantizer``), whose
            ``input_proj`` / ``output_proj`` convs are trained here.
        codebook_size: entries per codebook.
        num_codebooks: K, the codes per frame.
        ema_decay: EMA decay of the codebook statistics.
        kmeans_iters: k-means iterations on the first batch (0: random init).
        dropout: train with a random number of acoustic codebooks per step.
        dead_code_threshold: re-draw entries whose EMA usage falls below this.
    """

    def __init__(  # noqa: PLR0913 - the quantizer's own hyper-parameters
        self,
        projections: nn.Module,
        codebook_size: int,
        num_codebooks: int,
        ema_decay: float,
        kmeans_iters: int,
        dropout: bool,
        dead_code_threshold: float,
    ) -> None:
        super().__init__()
        self.proj = projections
        dim = projections.semantic_residual_vector_quantizer.input_proj.out_channels
        self._ready = False  # every codebook initialised (checked until it is)
        common = {"threshold_ema_dead_code": dead_code_threshold}
        self.semantic = _residual_vq(1, codebook_size, dim, ema_decay, kmeans_iters, **common)
        self.acoustic = _residual_vq(
            num_codebooks - 1,
            codebook_size,
            dim,
            ema_decay,
            kmeans_iters,
            quantize_dropout=dropout and num_codebooks > 2,
            **common,
        )

    def forward(self, latent: torch.Tensor) -> QuantizedLatent:
        """``latent [B, D, T]`` -> :class:`QuantizedLatent`."""
        sem_p = self.proj.semantic_residual_vector_quantizer
        ac_p = self.proj.acoustic_residual_vector_quantizer
        q_sem, c_sem, l_sem = self.semantic(sem_p.input_proj(latent).transpose(1, 2))
        # Quantizer dropout skips the later codebooks; until each has been initialised (k-means
        # on its first batch) the whole stack runs, so no codebook is exported uninitialised.
        dropout = self.acoustic.quantize_dropout
        self._ready = self._ready or self.initialised()
        self.acoustic.quantize_dropout = dropout and self._ready
        try:
            q_ac, c_ac, l_ac = self.acoustic(ac_p.input_proj(latent).transpose(1, 2))
        finally:
            self.acoustic.quantize_dropout = dropout
        out = sem_p.output_proj(q_sem.transpose(1, 2)) + ac_p.output_proj(q_ac.transpose(1, 2))
        codes = torch.cat((c_sem, c_ac), dim=-1).transpose(1, 2)
        return QuantizedLatent(out, codes, l_sem.sum() + l_ac.sum())

    def initialised(self) -> bool:
        """Whether every codebook has been initialised from data."""
        layers = [*self.semantic.layers, *self.acoustic.layers]
        return all(bool(layer._codebook.initted) for layer in layers)

    @torch.no_grad()
    def codebooks(self) -> list[torch.Tensor]:
        """The K codebooks ``[codebook_size, dim]``, semantic first."""
        return [*self.semantic.codebooks, *self.acoustic.codebooks]

    @torch.no_grad()
    def export_encoder(self) -> None:
        """Write the trained codebooks into the inference quantizer's EMA buffers."""
        books = self.codebooks()
        groups = (
            (self.proj.semantic_residual_vector_quantizer, books[:1]),
            (self.proj.acoustic_residual_vector_quantizer, books[1:]),
        )
        for group, vectors in groups:
            for holder, v in zip(group.layers, vectors, strict=True):
                holder.codebook.embed_sum.copy_(v)
                holder.codebook.cluster_usage.fill_(1.0)
                holder.codebook.initialized.fill_(1.0)

    @torch.no_grad()
    def export_decoder(self, dequantizer: nn.Module) -> None:
        """Copy codebooks and projections into a Code2Wav ``quantizer`` (split dequantizer)."""
        books = self.codebooks()
        pairs = (
            (dequantizer.rvq_first, self.proj.semantic_residual_vector_quantizer, books[:1]),
            (dequantizer.rvq_rest, self.proj.acoustic_residual_vector_quantizer, books[1:]),
        )
        for target, source, vectors in pairs:
            target.input_proj.weight.copy_(source.input_proj.weight)
            target.output_proj.weight.copy_(source.output_proj.weight)
            for layer, v in zip(target.vq.layers, vectors, strict=True):
                layer._codebook.embedding_sum.copy_(v)
                layer._codebook.cluster_usage.fill_(1.0)
