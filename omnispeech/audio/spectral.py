"""Multi-scale log-mel spectrograms and their distance: a differentiable training loss and a
quality measure of reconstructed audio.

The distance is the L1 distance of log-mel spectrograms at several STFT resolutions (short
windows resolve onsets, long ones harmonics), averaged over the resolutions.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.audio.features import slaney_mel_filters

# Magnitude floor before the log: -100 dB keeps silence finite without dominating the distance.
_LOG_FLOOR = 1e-5


class MelSpectrogram(nn.Module):
    """``wav [B, 1, S]`` -> log10 mel magnitude ``[B, n_mels, frames]`` (hop = window / 4)."""

    def __init__(self, sample_rate: int, window: int, n_mels: int) -> None:
        super().__init__()
        self.window_length = window
        self.hop = window // 4
        filters = np.array(slaney_mel_filters(n_mels, window, sample_rate))
        self.register_buffer("filters", torch.from_numpy(filters).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(window), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            wav.reshape(-1, wav.shape[-1]),
            self.window_length,
            self.hop,
            window=self.window,
            center=True,
            return_complex=True,
        ).abs()
        mel = torch.matmul(self.filters, spec)
        return torch.log10(mel.clamp_min(_LOG_FLOOR))


class MultiScaleMelLoss(nn.Module):
    """Mean over scales of the L1 distance of log-mel spectrograms.

    Args:
        sample_rate: Hz.
        windows: STFT window lengths (samples), one per scale.
        n_mels: mel bins per scale.
    """

    def __init__(self, sample_rate: int, windows: Sequence[int], n_mels: Sequence[int]) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            MelSpectrogram(sample_rate, w, m) for w, m in zip(windows, n_mels, strict=True)
        )

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``fake``, ``real``: ``[B, 1, S]`` -> scalar."""
        losses = [F.l1_loss(scale(fake), scale(real)) for scale in self.scales]
        return torch.stack(losses).mean()


@torch.no_grad()
def mel_distance(fake: torch.Tensor, real: torch.Tensor, sample_rate: int) -> float:
    """The default multi-scale log-mel L1 distance of two waveforms (lower is closer).

    Args:
        fake, real: one waveform each, ``[S]`` or ``[1, 1, S]``, at ``sample_rate``; the longer
            is cut to the shorter.
    """
    n = min(fake.shape[-1], real.shape[-1])
    loss = _default_loss(sample_rate).to(fake.device)
    return float(loss(fake[..., :n].reshape(1, 1, n), real[..., :n].reshape(1, 1, n)))


@functools.lru_cache(maxsize=4)
def _default_loss(sample_rate: int) -> MultiScaleMelLoss:
    """The scales of :func:`mel_distance`, built once per rate (evaluations call it per file)."""
    return MultiScaleMelLoss(sample_rate, (256, 512, 1024, 2048), (20, 40, 80, 160))
