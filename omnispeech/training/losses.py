"""Codec training losses besides the spectral one (``omnispeech.audio.MultiScaleMelLoss``).

The adversarial terms are least-squares GAN losses (real -> 1, fake -> 0); feature matching is
the L1 distance of every discriminator layer's activations, real detached.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def discriminator_loss(
    real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Least-squares: push real logits to 1 and fake ones to 0 (summed over discriminators)."""
    loss = real_logits[0].new_zeros(())
    for real, fake in zip(real_logits, fake_logits, strict=True):
        loss = loss + torch.mean((1 - real) ** 2) + torch.mean(fake**2)
    return loss


def generator_loss(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Least-squares: push the discriminators' fake logits to 1."""
    loss = fake_logits[0].new_zeros(())
    for fake in fake_logits:
        loss = loss + torch.mean((1 - fake) ** 2)
    return loss


def feature_matching_loss(
    real_features: Sequence[Sequence[torch.Tensor]],
    fake_features: Sequence[Sequence[torch.Tensor]],
) -> torch.Tensor:
    """Mean L1 distance of every layer's activations (real ones detached), summed over
    discriminators."""
    loss = fake_features[0][0].new_zeros(())
    for reals, fakes in zip(real_features, fake_features, strict=True):
        layer_losses = [F.l1_loss(f, r.detach()) for r, f in zip(reals, fakes, strict=True)]
        loss = loss + torch.stack(layer_losses).mean()
    return loss
