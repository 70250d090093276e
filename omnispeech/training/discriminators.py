"""Discriminators for codec training: multi-period (waveform) and multi-resolution STFT.

- A period discriminator folds the waveform into ``[B, 1, S / p, p]`` so that 2-D convs with
  kernels ``(k, 1)`` compare samples ``p`` apart: it sees periodic structure (pitch) that a
  plain 1-D conv stack blurs. Periods are primes so their views overlap little.
- An STFT discriminator looks at the complex spectrogram (real and imaginary parts as two
  channels) of one resolution, so it judges phase as well as magnitude.

Every discriminator returns its logits and the activations of each layer (for feature
matching). Weight normalisation keeps the layers' scale stable against the generator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

_SLOPE = 0.1  # leaky ReLU slope


@dataclasses.dataclass(frozen=True)
class Judgement:
    """Outputs of all discriminators for one batch.

    Attributes:
        logits: one tensor per discriminator (any shape; a score per patch).
        features: per discriminator, the activations of each of its layers.
    """

    logits: list[torch.Tensor]
    features: list[list[torch.Tensor]]


def _judge(
    convs: nn.ModuleList, out: nn.Module, x: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run a conv stack (leaky ReLU after each) and its output conv -> (logits ``[B, N]``,
    the activations of every layer)."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), _SLOPE)
        features.append(x)
    x = out(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """2-D conv stack over the waveform folded by ``period``. ``[B, 1, S]`` -> logits."""

    def __init__(self, period: int, channels: int) -> None:
        super().__init__()
        self.period = period
        widths = [1, channels, 4 * channels, 16 * channels, 32 * channels]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (5, 1), (3, 1), padding=(2, 0)))
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        last = widths[-1]
        self.convs.append(weight_norm(nn.Conv2d(last, last, (5, 1), 1, padding=(2, 0))))
        self.out = weight_norm(nn.Conv2d(last, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, s = wav.shape
        # Reflect-pad to a whole number of periods, then fold time into [S / p, p].
        pad = (-s) % self.period
        x = F.pad(wav, (0, pad), mode="reflect") if pad else wav
        return _judge(self.convs, self.out, x.view(b, c, -1, self.period))


class STFTDiscriminator(nn.Module):
    """2-D conv stack over one complex STFT resolution. ``[B, 1, S]`` -> logits."""

    def __init__(self, window: int, channels: int) -> None:
        super().__init__()
        self.window_length = window
        self.hop = window // 4
        self.register_buffer("window", torch.hann_window(window), persistent=False)
        c = channels
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(2, c, (3, 9), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), (1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), (1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), (1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
            ]
        )
        self.out = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(
            wav[:, 0],
            self.window_length,
            self.hop,
            window=self.window,
            center=True,
            return_complex=True,
        )  # [B, F, frames]
        # Real and imaginary parts as channels, time first: [B, 2, frames, F].
        return _judge(self.convs, self.out, torch.view_as_real(spec).permute(0, 3, 2, 1))


class CodecDiscriminators(nn.Module):
    """All period and STFT discriminators; ``wav [B, 1, S]`` -> :class:`Judgement`.

    Args:
        periods: one period discriminator per value (samples).
        stft_windows: one STFT discriminator per window length (samples).
        channels: width of the first layer.
    """

    def __init__(self, periods: Sequence[int], stft_windows: Sequence[int], channels: int) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            [
                *(PeriodDiscriminator(p, channels) for p in periods),
                *(STFTDiscriminator(w, channels) for w in stft_windows),
            ]
        )

    def forward(self, wav: torch.Tensor) -> Judgement:
        logits, features = [], []
        for disc in self.discriminators:
            y, f = disc(wav)
            logits.append(y)
            features.append(f)
        return Judgement(logits, features)
