"""A recogniser's ear as a codec loss: how far what a speech recogniser's audio encoder makes of
the decoded audio lies from what it makes of the original.

The multi-scale mel loss weighs every time-frequency bin alike. A small decoder that cannot
match them all spends its capacity where that loss is largest, which is not where words are
told apart. The audio encoder of a speech recogniser (the AuT of a Qwen3-ASR folder, e.g. the
bundled one) has learnt which differences change the words; matching its output tokens asks
the decoder for those first. The encoder is frozen and in eval mode: only the codec learns.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.audio.features import SAMPLE_RATE as RECOGNISER_RATE
from omnispeech.audio.features import log_mel_spectrogram
from omnispeech.errors import ConfigError

BUNDLED = "bundled"  # the value of ``data.recognizer`` that names the bundled recogniser
# The largest up-sampling factor the resampler builds a filter for (24 kHz -> 16 kHz needs 2).
_MAX_UP = 16


class Resampler(nn.Module):
    """A fixed, differentiable rational resampler ``orig`` Hz -> ``new`` Hz.

    Zeros are inserted to reach ``orig * up`` Hz, a Kaiser-windowed sinc low-pass (cut-off at
    0.95 of the lower Nyquist frequency) removes the images and what would alias, and every
    ``down``-th sample is kept; one strided conv does the last two steps.
    """

    def __init__(self, orig: int, new: int, half_width: int = 24, beta: float = 8.0) -> None:
        super().__init__()
        g = math.gcd(orig, new)
        self.up, self.down = new // g, orig // g
        if self.up > _MAX_UP:
            raise ConfigError(f"cannot resample {orig} Hz to {new} Hz (up-sampling by {self.up})")
        rate = orig * self.up
        cutoff = 0.95 * min(orig, new) / 2 / rate  # cycles per sample at the up-sampled rate
        n = half_width * max(self.up, self.down)
        t = np.arange(-n, n + 1, dtype=np.float64)
        h = 2 * cutoff * np.sinc(2 * cutoff * t) * np.kaiser(2 * n + 1, beta)
        h *= self.up / h.sum()  # unit gain at DC after the zero insertion
        self.register_buffer("kernel", torch.tensor(h, dtype=torch.float32)[None, None], False)
        self.pad = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, S]`` samples at ``orig`` -> ``[B, S * up // down]`` at ``new``."""
        if self.up == self.down:
            return x
        B, S = x.shape
        if self.up > 1:
            x = torch.cat((x[..., None], x.new_zeros(B, S, self.up - 1)), dim=-1).reshape(B, -1)
        y = F.conv1d(F.pad(x[:, None], (self.pad, self.pad)), self.kernel, stride=self.down)
        return y[:, 0, : S * self.up // self.down]


class RecognizerLoss(nn.Module):
    """L1 distance between a frozen ASR audio encoder's tokens of ``fake`` and of ``real``,
    relative to the mean magnitude of the real tokens (so the weight does not depend on the
    encoder's scale).

    Args:
        folder: a Qwen3-ASR folder, or ``"bundled"`` for the bundled recogniser.
        sample_rate: the codec's rate; audio is resampled to the recogniser's 16 kHz.
    """

    def __init__(self, folder: str | Path, sample_rate: int) -> None:
        super().__init__()
        from omnispeech.pipelines import ASR

        asr = ASR.from_pretrained(None if str(folder) == BUNDLED else str(folder))
        self.encoder = asr.encoder.net.float().eval().requires_grad_(False)
        self.resample = Resampler(sample_rate, RECOGNISER_RATE)

    def train(self, mode: bool = True) -> RecognizerLoss:
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout, whatever the trainer's mode
        return self

    def tokens(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, S]`` or ``[B, S]`` audio -> the encoder's tokens ``[B, N, D]``."""
        x = self.resample(wav.reshape(wav.shape[0], -1).float())
        feats = log_mel_spectrogram(x)
        lengths = torch.full((x.shape[0],), feats.shape[-1], dtype=torch.long)
        return self.encoder(feats, lengths)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Scalar loss; gradients reach ``fake`` only."""
        with torch.no_grad():
            target = self.tokens(real)
        pred = self.tokens(fake)
        return (pred - target).abs().mean() / target.abs().mean().clamp_min(1e-6)
