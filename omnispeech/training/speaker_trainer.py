"""The speaker-encoder training loop: one process or many (``torchrun``; gloo on CPU, NCCL on GPU).

Each step: a batch of augmented 24 kHz crops per process, speakers drawn uniformly from the
training split, the additive angular margin softmax over those speakers, gradients averaged by
DDP, AdamW with warm-up and cosine decay. Resuming is exact: a checkpoint holds the weights
(the classifier's too), the optimizer, the step and every process's random state, and batches
depend only on (seed, step, rank).

At every save, the encoder embeds held-out clips of the validation split (speakers the
training never saw) and the log gets the equal error rate of same- against different-speaker
cosine trials and the mean similarity of each kind of pair.

Output folder::

    OUT/checkpoints/step-00001000.pt   training state (torch.save; read with weights_only)
    OUT/model/                         the latest export: a Qwen3-TTS Base speaker encoder
    OUT/log.jsonl                      losses per logged step, verification scores per save
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from omnispeech.errors import ConfigError
from omnispeech.talker.speaker import SILENCE_PEAK
from omnispeech.training.run_state import OneOptimizerRun
from omnispeech.training.speaker_config import SpeakerTrainConfig
from omnispeech.training.speaker_data import (
    SpeakerBatcher,
    VoiceClip,
    held_out,
    read_crop,
    read_voices,
)
from omnispeech.training.speaker_model import TrainableSpeaker, verification_scores
from omnispeech.training.workers import Workers

LOSS_NAMES = ("total", "accuracy")


class SpeakerTrainer(OneOptimizerRun):
    """Trains a speaker encoder described by a :class:`SpeakerTrainConfig` into ``out_dir``.

    Args:
        cfg: the run.
        out_dir: checkpoints, exported encoder and log.
        workers: this process's place (default: from the ``torchrun`` environment).

    Attributes:
        skipped: training and held-out lines left out, counted by reason (``missing``,
            ``unreadable``, ``no_speaker``; ``silent`` for held-out clips).
        speakers: the training speaker ids; their order is the classifier's.

    Raises:
        ConfigError: no training manifest, no usable utterance, fewer than 2 training speakers,
            or a held-out split without two speakers of two clips each.
    """

    def __init__(
        self, cfg: SpeakerTrainConfig, out_dir: str | Path, workers: Workers | None = None
    ) -> None:
        if not cfg.data.train:
            raise ConfigError("no training data: pass --train MANIFEST (or set data.train)")
        self.cfg = cfg
        self.out = Path(out_dir)
        self.workers = workers or Workers.from_env()
        dc = cfg.data
        train_set, self.skipped = read_voices(dc.train, dc.train_split)
        self.batcher = SpeakerBatcher(train_set, dc, cfg.run.seed)
        self.speakers = self.batcher.speakers
        if len(self.speakers) < 2:
            raise ConfigError(
                f"{dc.train}: {len(self.speakers)} training speaker(s) in split "
                f"{dc.train_split!r}; telling voices apart needs at least 2 (the 'speaker' "
                "field of each line)"
            )
        self.valid_clips: list[np.ndarray] = []
        self.valid_speakers: list[str] = []
        if dc.valid and self.workers.is_main:
            self._load_held_out()
        dev = self.workers.device
        torch.manual_seed(cfg.run.seed)  # every process builds the same initial weights
        self.model = TrainableSpeaker(cfg.model, len(self.speakers)).to(dev)
        oc = cfg.optim
        # No weight decay on biases, nor on the classifier: its rows are normalised before
        # use, so shrinking them would only raise the effective learning rate.
        params = dict(self.model.named_parameters())
        plain = {n for n, p in params.items() if p.dim() < 2 or n == "classifier"}
        decay = [p for n, p in params.items() if n not in plain]
        no_decay = [p for n, p in params.items() if n in plain]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": oc.weight_decay}, {"params": no_decay}],
            lr=oc.lr,
            betas=oc.betas,
            weight_decay=0.0,
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.step = 0
        self.stopped_by: signal.Signals | None = None  # set by fit() when a signal stopped it
        torch.manual_seed(cfg.run.seed * 7919 + 1 + self.workers.rank)
        self.ddp: nn.Module = (
            DistributedDataParallel(self.model) if self.workers.world_size > 1 else self.model
        )

    def _load_held_out(self) -> None:
        """Read the held-out clips once (the middle ``valid_seconds`` of each), leaving out
        silent ones, and check that they make trials of both kinds."""
        dc = self.cfg.data
        clips, skipped = read_voices(dc.valid, dc.valid_split)
        self.skipped = self.skipped + Counter({f"valid_{k}": v for k, v in skipped.items()})
        chosen: list[VoiceClip] = held_out(clips, dc.valid_utterances)
        for clip in chosen:
            wav = read_crop(clip, min(clip.seconds, dc.valid_seconds), 0.5)
            if float(np.abs(wav).max()) < SILENCE_PEAK:
                self.skipped["valid_silent"] += 1
                continue
            self.valid_clips.append(wav)
            self.valid_speakers.append(clip.speaker)
        counts = Counter(self.valid_speakers)
        if len(counts) < 2 or max(counts.values()) < 2:
            raise ConfigError(
                f"{dc.valid}: split {dc.valid_split!r} needs at least 2 speakers and 2 clips "
                f"of >= 1 s of one speaker for verification trials (found {len(counts)} "
                f"speakers, {len(self.valid_clips)} clips)"
            )

    # -- export --------------------------------------------------------------------------------
    def export(self, folder: Path | None = None) -> Path:
        """Write the current encoder as a Qwen3-TTS Base speaker encoder folder (default
        ``OUT/model``)."""
        return self.model.export(folder or self.out / "model")

    # -- checkpoints ---------------------------------------------------------------------------
    def restore_state(self, state: dict[str, Any]) -> None:
        rows = state["model"]["classifier"].shape[0]
        if rows != len(self.speakers):
            # The classifier's rows are the training speakers: another speaker list cannot
            # continue this run.
            raise ConfigError(
                f"the checkpoint was trained on {rows} speakers, this manifest has "
                f"{len(self.speakers)}; resume with the same training data"
            )
        super().restore_state(state)

    # -- one step ------------------------------------------------------------------------------
    def _batch(self) -> tuple[Any, dict[str, float]]:
        batch = self.batcher.batch(self.step, self.workers.rank).to(self.workers.device)
        return batch, {"seconds": batch.seconds}

    def validate(self) -> dict[str, float]:
        """Equal error rate and mean cosine similarities of every pair of held-out clips,
        embedded one at a time as the pipeline embeds a reference clip."""
        if not self.valid_clips:
            return {}
        self.model.eval()
        embeddings = self.model.embed_clips(self.valid_clips)
        self.model.train()
        return verification_scores(embeddings, self.valid_speakers)

    # -- the loop ------------------------------------------------------------------------------
    loss_names = LOSS_NAMES
    run_name = "train speaker"

    def _postfix(self, losses: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{losses['total']:.3f}", "acc": f"{losses['accuracy']:.2f}"}
