"""Ctrl-C or a kill during training: a checkpoint of the step in progress, a clean exit, and a
resume that ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from omnispeech.training.interrupt import StopRequest
from tests.test_codec_training import _config, corpus  # noqa: F401 - corpus is a fixture


class _Ranks:
    """Stands in for ``Workers``: the other ranks' flags are given, the maximum is taken."""

    def __init__(self, others: float = 0.0) -> None:
        self.others = others
        self.calls = 0

    def maximum(self, value: float) -> float:
        self.calls += 1
        return max(value, self.others)


def test_a_signal_sets_the_flag_and_the_handlers_come_back():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    ranks = _Ranks()
    with StopRequest(ranks) as stop:
        assert not stop.agreed() and stop.stopped_by is None
        os.kill(os.getpid(), signal.SIGTERM)  # handled at once, in this (the main) thread
        assert stop.received == signal.SIGTERM
        # A second SIGTERM would get the previous handler: the first one is not repeated.
        assert signal.getsignal(signal.SIGTERM) == before[signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) != before[signal.SIGINT]
        assert stop.agreed() and stop.stopped_by == signal.SIGTERM
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert ranks.calls == 2  # one reduction per question, on every rank


def test_any_rank_stops_them_all():
    # This process received nothing; another rank got Ctrl-C: this one stops too.
    with StopRequest(_Ranks(others=float(signal.SIGINT))) as stop:
        assert stop.received is None
        assert stop.agreed() and stop.stopped_by == signal.SIGINT


def _train(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["train", "codec", "-c", str(config), "-o", str(out), "--quiet", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "omnispeech", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["codec"]


def test_ctrl_c_before_the_first_save_keeps_the_run_and_resume_matches(corpus, tmp_path):  # noqa: F811
    cfg = _config(corpus)
    cfg["data"].pop("valid")  # no held-out evaluation: only training steps matter here
    cfg["data"]["train"] = str(corpus / "train")
    cfg["run"].update(steps=1000, save_every=1000)  # the first save would be far away
    config = tmp_path / "run.json"
    config.write_text(json.dumps(cfg))
    out = tmp_path / "stopped"
    proc = _train(config, out)
    log = out / "log.jsonl"
    deadline = time.monotonic() + 240
    # Ctrl-C once the loop runs (the log has a step), long before the first checkpoint.
    while not (log.is_file() and log.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    code, err = _finish(proc)
    assert code == 128 + signal.SIGINT, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGINT at step ") and "same command" in last
    (saved,) = sorted((out / "checkpoints").glob("step-*.pt"))
    stopped_at = torch.load(saved, weights_only=True)["step"]
    assert 2 <= stopped_at < 1000 and saved.name == f"step-{stopped_at:08d}.pt"
    assert (out / "model" / "model.safetensors").is_file()  # the export of that step, too

    # The same command (here told where to end) continues from the step it stopped at, and
    # ends with the weights of a run that was never interrupted.
    end = str(stopped_at + 2)
    code, err = _finish(_train(config, out, "--steps", end))
    assert code == 0, err
    code, err = _finish(_train(config, tmp_path / "straight", "--steps", end))
    assert code == 0, err
    name = f"step-{stopped_at + 2:08d}.pt"
    resumed = _weights(out / "checkpoints" / name)
    straight = _weights(tmp_path / "straight" / "checkpoints" / name)
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key
    steps = [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, stopped_at + 3))  # one line per step, none twice
