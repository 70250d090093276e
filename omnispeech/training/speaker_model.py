"""The speaker encoder as it is trained: ECAPA-TDNN plus an additive angular margin softmax
over the training speakers, and the verification scores of held-out voices.

Only the encoder is exported (:meth:`TrainableSpeaker.export`, the Qwen3-TTS Base layout that
:meth:`omnispeech.talker.SpeakerEncoder.from_pretrained` loads); the classifier's rows (one
direction per training speaker) live in the training checkpoints only: they describe the
training set, not voices in general.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.talker.speaker import SpeakerEncoder, speaker_log_mel
from omnispeech.training.speaker_config import SpeakerModelConfig
from omnispeech.training.speaker_data import SpeakerBatch


def aam_logits(
    embeddings: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    margin: float,
    scale: float,
) -> torch.Tensor:
    """Additive angular margin (ArcFace) logits.

    ``scale * cos(theta_j)`` for every speaker ``j``, except the true one, which gets
    ``scale * cos(theta_y + margin)``: the angle to the true speaker's direction is penalised
    by ``margin`` radians before the softmax.

    Args:
        embeddings: ``[B, D]`` (any norm).
        weight: ``[N, D]`` one direction per speaker (any norm).
        labels: ``[B]`` true speaker indices in ``0 .. N-1``.
        margin: radians added to the true speaker's angle.
        scale: multiplies every cosine (the softmax's inverse temperature).

    Returns:
        ``[B, N]`` logits for cross-entropy.
    """
    cosine = F.linear(F.normalize(embeddings, dim=1), F.normalize(weight, dim=1))
    # The floor keeps the square root's gradient finite when a cosine reaches +-1.
    sine = torch.sqrt((1.0 - cosine.square()).clamp(min=1e-7))
    shifted = cosine * math.cos(margin) - sine * math.sin(margin)  # cos(theta + margin)
    # cos(theta + m) stops falling once theta + m passes pi; past theta = pi - m, a linear
    # penalty of the same size keeps the true logit decreasing with the angle.
    threshold = math.cos(math.pi - margin)
    shifted = torch.where(cosine > threshold, shifted, cosine - math.sin(math.pi - margin) * margin)
    true = F.one_hot(labels, weight.shape[0]).bool()
    return scale * torch.where(true, shifted, cosine)


class TrainableSpeaker(nn.Module):
    """The encoder and the classifier of the training speakers.

    Args:
        cfg: encoder shape and loss.
        num_speakers: training speakers (rows of the classifier).
    """

    def __init__(self, cfg: SpeakerModelConfig, num_speakers: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = SpeakerEncoder(cfg.encoder_config())
        self.classifier = nn.Parameter(torch.empty(num_speakers, cfg.enc_dim))
        nn.init.xavier_uniform_(self.classifier)

    @property
    def num_speakers(self) -> int:
        return self.classifier.shape[0]

    def forward(self, batch: SpeakerBatch) -> dict[str, torch.Tensor]:
        """Losses of one batch: ``total`` (AAM cross-entropy) and ``accuracy`` (the nearest
        speaker direction is the true one, without margin)."""
        embeddings = self.encoder(speaker_log_mel(batch.wav))
        cfg = self.cfg
        logits = aam_logits(embeddings, self.classifier, batch.labels, cfg.margin, cfg.scale)
        with torch.no_grad():
            cosine = F.linear(F.normalize(embeddings, dim=1), F.normalize(self.classifier, dim=1))
            accuracy = (cosine.argmax(dim=1) == batch.labels).float().mean()
        return {"total": F.cross_entropy(logits, batch.labels), "accuracy": accuracy}

    @torch.no_grad()
    def embed_clips(self, clips: list[np.ndarray]) -> torch.Tensor:
        """Unit-length embeddings of 24 kHz clips of any lengths (>= 1 s), one at a time as
        the pipeline embeds a reference: ``[len(clips), enc_dim]`` float32 on the CPU."""
        device = self.classifier.device
        out = [self.encoder.embed(torch.from_numpy(c).to(device))[0] for c in clips]
        return F.normalize(torch.stack(out).float(), dim=1).cpu()

    def export(self, folder: str | Path) -> Path:
        """Write the encoder alone as a Qwen3-TTS Base folder (``config.json`` with
        ``speaker_encoder_config``, tensors ``speaker_encoder.*``)."""
        folder = Path(folder)
        self.encoder.save_pretrained(folder)
        return folder


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> float:
    """The error rate where false acceptances equal false rejections.

    Args:
        scores: ``[P]`` similarity of each trial pair (higher: more alike).
        same: ``[P]`` bool, True where the pair is one speaker.

    Returns:
        The EER in [0, 1] (0: a threshold separates every pair; 0.5: chance), the mean of the
        two rates at the threshold where they are closest.

    Raises:
        ValueError: no same-speaker pair or no different-speaker pair.
    """
    same = np.asarray(same, dtype=bool)
    n_same, n_diff = int(same.sum()), int((~same).sum())
    if n_same == 0 or n_diff == 0:
        raise ValueError("the EER needs same-speaker and different-speaker pairs")
    # Accepting the k best-scoring pairs, for k = 0 .. P: rates after each threshold.
    ordered = same[np.argsort(-np.asarray(scores), kind="stable")]
    accepted_same = np.concatenate([[0], np.cumsum(ordered)])
    accepted_diff = np.concatenate([[0], np.cumsum(~ordered)])
    false_accept = accepted_diff / n_diff
    false_reject = 1.0 - accepted_same / n_same
    i = int(np.argmin(np.abs(false_accept - false_reject)))
    return float((false_accept[i] + false_reject[i]) / 2)


def verification_scores(embeddings: torch.Tensor, speakers: list[str]) -> dict[str, float]:
    """Verification on every pair of held-out clips.

    Args:
        embeddings: ``[N, D]`` unit-length embeddings.
        speakers: ``N`` speaker ids.

    Returns:
        ``valid_eer`` (cosine-similarity trials), ``valid_sim_same`` and ``valid_sim_other``
        (mean cosine of same- and different-speaker pairs) and ``valid_sim_gap`` (their
        difference: how far apart the encoder holds two voices).
    """
    sims = (embeddings @ embeddings.T).numpy()
    ids = np.array([speakers.index(s) for s in speakers])
    upper = np.triu_indices(len(speakers), k=1)
    scores, same = sims[upper], (ids[:, None] == ids[None, :])[upper]
    sim_same, sim_other = float(scores[same].mean()), float(scores[~same].mean())
    return {
        "valid_eer": equal_error_rate(scores, same),
        "valid_sim_same": sim_same,
        "valid_sim_other": sim_other,
        "valid_sim_gap": sim_same - sim_other,
    }
