"""Where a training process stands among its peers, and the checkpoints every trainer writes.

:class:`Workers` is this process's rank, the number of processes and its device, with the
collective calls the trainers use (``torchrun``: gloo on CPU, NCCL on GPU).
:class:`CheckpointedRun` is the checkpoint file handling of a run: a checkpoint holds the
step, the number of processes, the config, the trainer's tensors and every process's random
state; it is written atomically, the newest ``KEEP_CHECKPOINTS`` are kept, and the model is
exported next to it. Resuming needs the same number of processes (batches depend on (seed,
step, rank)) and the same model section of the config.
"""

from __future__ import annotations

import dataclasses
import gc
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from omnispeech.errors import ConfigError

KEEP_CHECKPOINTS = 3


@dataclasses.dataclass(frozen=True)
class Workers:
    """Where this process stands among the training processes."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str | None = None) -> Workers:
        """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1), if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if world > 1 and not dist.is_initialized():
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        return cls(rank, world, dev)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (after the last collective call). Without it, gloo's
        threads may still run while the interpreter exits, which can abort the process.
        Drop the trainer (its DDP wrappers hold the group) before calling this."""
        if self.world_size > 1 and dist.is_initialized():
            gc.collect()  # DDP wrappers in reference cycles still hold the group until then
            dist.barrier()
            dist.destroy_process_group()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` over processes."""
        if self.world_size > 1:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def maximum(self, value: float) -> float:
        """The largest ``value`` over processes (every process must call it)."""
        if self.world_size == 1:
            return value
        out = torch.tensor([value], dtype=torch.float32, device=self.device)
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
        return float(out.item())

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """``tensor`` of every process (same shape everywhere), by rank."""
        if self.world_size == 1:
            return [tensor]
        out = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(out, tensor)
        return out


def rng_state(device: torch.device) -> torch.Tensor:
    state = torch.get_rng_state()
    if device.type == "cuda":
        state = torch.cat((state, torch.cuda.get_rng_state(device)))
    return state


def set_rng_state(state: torch.Tensor, device: torch.device) -> None:
    n = torch.get_rng_state().numel()
    torch.set_rng_state(state[:n].clone())
    if device.type == "cuda":
        torch.cuda.set_rng_state(state[n:].clone(), device)


class CheckpointedRun:
    """Base of the trainers: writes and restores their checkpoints.

    Subclasses set ``cfg`` (with ``to_dict()`` and a ``model`` section), ``out``, ``workers``
    and ``step``, and define :meth:`training_state`, :meth:`restore_state` and
    :meth:`export_model`.
    """

    cfg: Any
    out: Path
    workers: Workers
    step: int

    def training_state(self) -> dict[str, Any]:  # pragma: no cover - per trainer
        """The trainer's weights, optimizers and schedules, as state dicts by name."""
        raise NotImplementedError

    def restore_state(self, state: dict[str, Any]) -> None:  # pragma: no cover - per trainer
        """Load what :meth:`training_state` wrote."""
        raise NotImplementedError

    def export_model(self) -> None:  # pragma: no cover - per trainer
        """Export the model beside the checkpoints (main process only)."""
        raise NotImplementedError

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint in the output folder, if any."""
        found = sorted(self.checkpoint_dir.glob("step-*.pt"))
        return found[-1] if found else None

    def save(self) -> Path:
        """Write the training state (all processes take part) and export the model."""
        rng = self.workers.gather(rng_state(self.workers.device).to(self.workers.device))
        path = self.checkpoint_dir / f"step-{self.step:08d}.pt"
        if self.workers.is_main:
            state = {
                "step": self.step,
                "world_size": self.workers.world_size,
                "config": self.cfg.to_dict(),
                **self.training_state(),
                "rng": [r.cpu() for r in rng],
            }
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(state, tmp)
            tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint
            for old in sorted(self.checkpoint_dir.glob("step-*.pt"))[:-KEEP_CHECKPOINTS]:
                old.unlink()
            self.export_model()
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
        self.restore_state(state)
        set_rng_state(state["rng"][self.workers.rank].cpu(), self.workers.device)
        self.step = int(state["step"])


__all__ = [
    "KEEP_CHECKPOINTS",
    "CheckpointedRun",
    "Workers",
    "rng_state",
    "set_rng_state",
]
