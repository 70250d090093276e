"""The step loop every trainer shares: resume, train, save and validate on schedule, log, show
progress, and stop cleanly on a signal.

A trainer supplies one optimisation step, its checkpoints and its validation; this loop owns
the order of events, which is what exact resumption depends on: a checkpoint is written after
the step it names, the validation runs after that save and only on the main process, and every
process takes the same decision to stop after the same step.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from omnispeech.errors import ConfigError
from omnispeech.training.interrupt import STOP_NOTICE, StopRequest


class SteppedTrainer(Protocol):
    """What :func:`fit_steps` needs of a trainer (``CodecTrainer``, ``ASRTrainer``)."""

    out: Path
    step: int
    workers: Any  # Workers: is_main, barrier(), maximum()
    stopped_by: signal.Signals | None

    def latest_checkpoint(self) -> Path | None: ...

    def load(self, path: Path) -> None: ...

    def save(self) -> Path: ...

    def train_step(self) -> dict[str, float]: ...


def fit_steps(  # noqa: PLR0913 - the loop's schedule, each part named at the call
    trainer: SteppedTrainer,
    total: int,
    *,
    save_every: int,
    log_every: int,
    resume: bool,
    progress: bool,
    name: str,
    validate: Callable[[], dict[str, float]] | None = None,
    postfix: Callable[[dict[str, float]], dict[str, str]] | None = None,
) -> Path:
    """Train ``trainer`` until step ``total``; returns ``trainer.out / "model"``.

    Args:
        trainer: the trainer, in training mode.
        total: the last step.
        save_every: a checkpoint (and a validation) every this many steps, and at ``total``.
        log_every: a line of ``out/log.jsonl`` every this many steps (and at every save).
        resume: continue from the newest checkpoint; False refuses a folder that has one.
        progress: a progress bar on the main process.
        name: the progress bar's label.
        validate: held-out scores added to the log at each scheduled save (main process).
        postfix: the losses to show beside the bar, as ``{label: text}``.

    SIGINT or SIGTERM stops the run after the step in progress, with a checkpoint of that step;
    ``trainer.stopped_by`` names the signal (None when the run finished).

    Raises:
        ConfigError: ``resume`` is False and the folder already holds checkpoints.
    """
    latest = trainer.latest_checkpoint()
    if latest is not None and not resume:
        # Starting over would interleave two runs' checkpoints; never overwrite silently.
        raise ConfigError(
            f"{trainer.out} already holds checkpoints ({latest.name}); resume, or train "
            "into another folder"
        )
    if latest is not None:
        trainer.load(latest)
    workers = trainer.workers
    log = trainer.out / "log.jsonl"
    if workers.is_main:
        trainer.out.mkdir(parents=True, exist_ok=True)
        truncate_log(log, trainer.step)
    bar = None
    if progress and workers.is_main:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=trainer.step, desc=name, unit="step")
    trainer.stopped_by = None
    with StopRequest(workers, STOP_NOTICE if workers.is_main else None) as stop:
        while trainer.step < total:
            losses = trainer.train_step()
            record: dict[str, Any] = {"step": trainer.step, **losses}
            # Asked on every rank after every step, so all ranks stop after the same one.
            stopping = stop.agreed() and trainer.step < total
            scheduled = trainer.step % save_every == 0 or trainer.step == total
            if scheduled or stopping:
                trainer.save()
                if scheduled and validate is not None and workers.is_main:
                    record.update(validate())
                workers.barrier()
            if workers.is_main:
                if scheduled or stopping or trainer.step % log_every == 0:
                    with log.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                if bar is not None:
                    bar.update(1)
                    if postfix is not None:
                        bar.set_postfix(postfix(losses))
            if stopping:
                trainer.stopped_by = stop.stopped_by
                break
    if bar is not None:
        bar.close()
    if trainer.stopped_by is None and not (trainer.out / "model").is_dir():
        # Nothing left to train, yet no export: a folder holding only a checkpoint (copied in
        # to export an earlier step of a run). The folder this returns must exist.
        trainer.save()
    return trainer.out / "model"


def truncate_log(log: Path, step: int) -> None:
    """Drop log lines past ``step`` (a run that died after its last checkpoint)."""
    if not log.exists():
        return
    keep = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= step]
    log.write_text("".join(line + "\n" for line in keep))
