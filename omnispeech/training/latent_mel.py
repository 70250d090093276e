"""An auxiliary loss on the codec's latent: a small head reads the dequantised latent and
predicts the log-mel spectrogram of the frame it codes.

The codec's encoder otherwise learns only through the whole decoder (a transformer and a
1920x upsampling stack), and while that decoder is weak it asks little of the latent. Measured
on the bundled run at step 13,000: a conv probe trained on its frozen latent predicts the
log-mel no better than the decoder does, and Griffin-Lim of that prediction is as unintelligible
to PocketSphinx as the codec's output, while Griffin-Lim of the true log-mel is nearly as
intelligible as the recording. So the latent itself lacks the detail. This head gives the
encoder a short path to that detail from the first step. It trains with the codec and is never
exported: the exported folder keeps the released layout.

Measured on the bundled recipe (weight 15, with an encoder twice as wide): the held-out mel
distance tracked the run without it through 1,500 steps (``benchmarks/RESULTS.md``), while
the same codec at 25 frames per second went on past the 12.5 Hz one's best: the frame rate,
not the encoder's training signal, is what the diagnosis points to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.audio.spectral import MelSpectrogram

# Mel bins the head predicts; enough for the formant detail a recogniser reads.
N_MELS = 80
# Log-mel frames per latent frame (hop = codec hop / 8: 240 samples, 10 ms, at 12.5 Hz).
FRAMES_PER_LATENT = 8


class LatentMelHead(nn.Module):
    """``latent [B, D, T]`` -> predicted log10-mel ``[B, 80, 8 T]`` and its L1 to the audio's.

    Args:
        dim: the latent's width D (the codec's ``encoder_dim``).
        hop_length: samples per latent frame (1920 for 24 kHz at 12.5 Hz); a multiple of 32.
        sample_rate: Hz.
    """

    def __init__(self, dim: int, hop_length: int, sample_rate: int) -> None:
        super().__init__()
        if hop_length % (4 * FRAMES_PER_LATENT):
            raise ValueError(f"hop_length {hop_length} is not a multiple of 32")
        # A window of 4 mel hops (hop = window / 4 in MelSpectrogram).
        self.target = MelSpectrogram(sample_rate, hop_length // 2, N_MELS)
        width = 2 * dim
        # Non-causal and small: it only has to show what the latent holds, not to decode.
        self.net = nn.Sequential(
            nn.Conv1d(dim, width, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(width, FRAMES_PER_LATENT * N_MELS, 1),
        )

    def predict(self, latent: torch.Tensor) -> torch.Tensor:
        """``latent [B, D, T]`` -> log10-mel ``[B, 80, 8 T]``."""
        b, _, t = latent.shape
        out = self.net(latent).view(b, FRAMES_PER_LATENT, N_MELS, t)
        return out.permute(0, 2, 3, 1).reshape(b, N_MELS, t * FRAMES_PER_LATENT)

    def forward(self, latent: torch.Tensor, wav: torch.Tensor) -> torch.Tensor:
        """``latent [B, D, T]``, ``wav [B, 1, S]`` (the codec's input) -> scalar L1 loss.

        Frame ``j`` of the target is centred on sample ``j * hop_length / 8``; the prediction's
        frame ``j`` belongs to latent frame ``j // 8``. Frames beyond the shorter of the two are
        left out.
        """
        pred = self.predict(latent)
        with torch.no_grad():
            real = self.target(wav)
        n = min(pred.shape[-1], real.shape[-1])
        return F.l1_loss(pred[..., :n], real[..., :n])
