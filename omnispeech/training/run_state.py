"""What the ASR and TTS trainers share: one model, one AdamW, warm-up then cosine decay, the
step loop, and checkpoints that continue a run exactly.

A checkpoint holds the step, the number of processes, the config, the weights, the optimizer,
the schedule and every process's random state; it is written atomically, the newest
``KEEP_CHECKPOINTS`` are kept, and the model is exported next to it. Resuming needs the same
number of processes (the batches depend on (seed, step, rank)) and the same model section of
the config.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from omnispeech.errors import ConfigError
from omnispeech.training.loop import fit_steps
from omnispeech.training.trainer import KEEP_CHECKPOINTS, Workers, _rng_state, _set_rng_state


class OneOptimizerRun:
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
    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint in the output folder, if any."""
        found = sorted(self.checkpoint_dir.glob("step-*.pt"))
        return found[-1] if found else None

    def save(self) -> Path:
        """Write the training state (all processes take part) and export the model."""
        rng = self.workers.gather(_rng_state(self.workers.device).to(self.workers.device))
        path = self.checkpoint_dir / f"step-{self.step:08d}.pt"
        if self.workers.is_main:
            state = {
                "step": self.step,
                "world_size": self.workers.world_size,
                "config": self.cfg.to_dict(),
                "model": self.model.state_dict(),
                "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(),
                "rng": [r.cpu() for r in rng],
            }
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(state, tmp)
            tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint
            for old in sorted(self.checkpoint_dir.glob("step-*.pt"))[:-KEEP_CHECKPOINTS]:
                old.unlink()
            self.export()
        self.workers.barrier()
        return path

    def load(self, path: Path) -> None:
        """Restore a checkpoint written by :meth:`save` (same number of processes)."""
        state = torch.load(path, map_location=self.workers.device, weights_only=True)
        if state["world_size"] != self.workers.world_size:
            raise ConfigError(
                f"{path} was written by {state['world_size']} processes; resume with the "
                f"same number (this run has {self.workers.world_size}) for an exact continuation"
            )
        if state["config"]["model"] != self.cfg.model.to_dict():
            raise ConfigError(f"{path}: the model section of the config differs from this run's")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        _set_rng_state(state["rng"][self.workers.rank].cpu(), self.workers.device)
        self.step = int(state["step"])


__all__ = ["OneOptimizerRun"]
