"""What the ASR and TTS trainers share: one model, one AdamW, warm-up then cosine decay, the
step loop, and checkpoints that continue a run exactly (written by
:class:`~omnispeech.training.workers.CheckpointedRun`: the weights, the optimizer and the
schedule beside the step, the config and every process's random state).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from omnispeech.training.loop import fit_steps
from omnispeech.training.workers import CheckpointedRun, Workers


class OneOptimizerRun(CheckpointedRun):
    """Base of a trainer with ``model``, ``opt`` and ``sched`` (a ``LambdaLR`` over
    :meth:`_lr_factor`).

    Subclasses set ``cfg`` (with ``optim.warmup``, ``optim.min_lr_ratio``, ``run.steps``, a
    ``model`` section and ``to_dict()``), ``out``, ``workers``, ``model``, ``opt``, ``sched``
    and ``step``, and define :meth:`export`.
    """

    cfg: Any  # ASRTrainConfig / TTSTrainConfig
    out: Path
    workers: Workers
    model: nn.Module
    ddp: nn.Module  # the model, wrapped in DistributedDataParallel with several processes
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    step: int

    run_name = "train"  # the progress bar's label
    loss_names: tuple[str, ...] = ("total",)  # what train_step averages over processes

    def _batch(self) -> tuple[Any, dict[str, float]]:  # pragma: no cover - per trainer
        """This step's batch on this process's device, and what to report about its size."""
        raise NotImplementedError

    def train_step(self) -> dict[str, float]:
        """One optimisation step; returns the losses averaged over processes."""
        batch, size = self._batch()
        losses = self.ddp(batch)
        self.opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        values = torch.stack([losses[k].detach().float() for k in self.loss_names])
        out = dict(zip(self.loss_names, self.workers.mean(values).tolist(), strict=True))
        return {**out, **size}

    def export(self, folder: Path | None = None) -> Path:  # pragma: no cover - per trainer
        raise NotImplementedError

    def validate(self) -> dict[str, float]:  # pragma: no cover - per trainer
        raise NotImplementedError

    def _postfix(self, losses: dict[str, float]) -> dict[str, str]:
        """The losses the progress bar shows."""
        return {k: f"{v:.3f}" for k, v in losses.items() if k != "seconds"}

    def fit(self, steps: int | None = None, resume: bool = True, progress: bool = True) -> Path:
        """Train until ``steps`` (default: the config's), saving every ``save_every`` steps and
        at the end; returns the exported model folder.

        SIGINT (Ctrl-C) or SIGTERM stops the run after the step in progress, with a checkpoint
        of that step, and :attr:`stopped_by` names the signal (None when the run finished);
        calling ``fit`` again (the same command) continues from it.
        """
        self.model.train()
        return fit_steps(
            self,
            self.cfg.run.steps if steps is None else steps,
            save_every=self.cfg.run.save_every,
            log_every=self.cfg.run.log_every,
            resume=resume,
            progress=progress,
            name=self.run_name,
            validate=self.validate,
            postfix=self._postfix,
        )

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up over ``optim.warmup`` steps, then cosine to ``optim.min_lr_ratio``
        at ``run.steps``."""
        oc, total = self.cfg.optim, self.cfg.run.steps
        if step < oc.warmup:
            return (step + 1) / oc.warmup
        progress = min(1.0, (step - oc.warmup) / max(1, total - oc.warmup))
        return oc.min_lr_ratio + (1 - oc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    # -- checkpoints ---------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])

    def export_model(self) -> None:
        self.export()


__all__ = ["OneOptimizerRun"]
