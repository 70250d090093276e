"""Shared helpers of the benchmarks: timing, machine description, JSON and RESULTS.md output.

Benchmarks measure and report; they never assert on timings (a loaded CI machine would make
such assertions flaky, and the numbers are only meaningful next to the reference measured in
the same run).
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from omnispeech.core.cpuinfo import cpu_caches, cpu_model

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"
RESULTS_HEADER = (
    "# Benchmark results\n\n"
    "Each section is marked with its name. A section named after a script in `benchmarks/`\n"
    "(`bench_NAME.py` writes `NAME`) is written by that script, one block per processor it ran\n"
    "on (a run replaces the block of its own processor only); the others say at their top\n"
    "that they are written by hand, and from which commands.\n"
)

# The special tokens a Qwen3-ASR prompt needs, in the order the tiny tokenizer assigns ids.


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the timed runs of one measurement."""

    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def min(self) -> float:
        return min(self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "min_s": self.min, "runs_s": list(self.runs)}


# Python that prints the peak resident memory (MiB) of the process it ends. VmHWM belongs to
# the process's own address space, which exec starts afresh; getrusage's ru_maxrss does not: a
# child keeps the high-water mark its parent had when it forked, so a fresh process started
# from a large benchmark would report the benchmark's size.
PRINT_PEAK_MIB = (
    "print(int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))"
    ".split()[1]) / 1024)"
)


def set_threads(threads: int) -> int:
    """Pin torch's intra-op pool so that both implementations get the same cores."""
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def _run_once(fn: Callable[[], object], setup: Callable[[], object] | None) -> float:
    """Seconds of one ``fn()`` call; ``setup`` and a garbage collection run untimed first, so
    that neither a restore nor a collection triggered by the previous run lands inside it."""
    if setup is not None:
        setup()
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_call(
    fn: Callable[[], object],
    repeats: int,
    warmup: int = 1,
    setup: Callable[[], object] | None = None,
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed burn-in runs, then ``repeats`` timed runs.

    Every run happens under ``torch.inference_mode`` (no autograd bookkeeping, as in real
    inference). ``setup`` runs untimed before each call, e.g. to restore a streaming state.
    """
    with torch.inference_mode():
        runs = [_run_once(fn, setup) for _ in range(warmup + repeats)]
    return Timing(tuple(runs[warmup:]))


def time_pair(  # noqa: PLR0913 - two functions, each with its optional setup, and the counts
    fn_a: Callable[[], object],
    fn_b: Callable[[], object],
    repeats: int,
    warmup: int = 1,
    setup_a: Callable[[], object] | None = None,
    setup_b: Callable[[], object] | None = None,
) -> tuple[Timing, Timing]:
    """Time two implementations of the same work, interleaved run by run.

    On a shared machine the background load drifts; alternating the two (and which one goes
    first in each round) exposes both to the same load, which keeps their ratio fair even when
    the absolute times are noisy. Burn-in and timed runs are as in :func:`time_call`.
    """
    runs_a: list[float] = []
    runs_b: list[float] = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            if i % 2 == 0:
                ta = _run_once(fn_a, setup_a)
                tb = _run_once(fn_b, setup_b)
            else:
                tb = _run_once(fn_b, setup_b)
                ta = _run_once(fn_a, setup_a)
            runs_a.append(ta)
            runs_b.append(tb)
    return Timing(tuple(runs_a[warmup:])), Timing(tuple(runs_b[warmup:]))


def gemv_bandwidth(rows: int = 8192, cols: int = 8192, repeats: int = 10) -> dict[str, Any]:
    """How fast float32 weights stream through a matrix-vector product on this machine.

    ``W @ x`` with ``W [rows, cols]`` (256 MiB by default, far larger than any cache) reads
    every weight once per call, as one decoding step of a language model does; its bytes per
    second bound the speed of such a step. Measured on torch's current threads, median of
    ``repeats`` runs after two burn-in runs.
    """
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(0))
    x = torch.randn(cols, generator=torch.Generator().manual_seed(1))
    t = time_call(lambda: torch.mv(w, x), repeats, warmup=2)
    return {
        "matrix": [rows, cols],
        "median_s": t.median,
        "gb_per_s": w.numel() * w.element_size() / t.median / 1e9,
    }


def _size(n: int) -> str:
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} B"


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPU model, cores, caches, torch threads, versions."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "caches": cpu_caches(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # the reference is optional for benchmarks that do not need it
        pass
    return info


def processor_line(info: dict[str, Any]) -> str:
    """The processor alone: model, logical cores and cache sizes per core.

    It names a kind of machine: ``RESULTS.md`` keeps one block per distinct line (see
    :func:`write_section`).
    """
    caches = info.get("caches") or {}
    sizes = ", ".join(f"{k} {_size(v)}" for k, v in sorted(caches.items()))
    return f"{info['cpu']}, {info['logical_cores']} logical cores" + (
        f" ({sizes})" if sizes else ""
    )


def print_processor(info: dict[str, Any] | None = None) -> None:
    """Say on stderr which processor the benchmark runs on."""
    print(f"Processor: {processor_line(info or machine_info())}", file=sys.stderr)


def machine_line(info: dict[str, Any]) -> str:
    """One markdown line describing the machine."""
    parts = [
        processor_line(info),
        f"torch.set_num_threads({info['torch_threads']})",
        f"torch {info['torch']}",
    ]
    if "transformers" in info:
        parts.append(f"transformers {info['transformers']}")
    parts.append(f"Python {info['python']}")
    return ", ".join(parts)


def today() -> str:
    return datetime.date.today().isoformat()


def sig3(x: float) -> str:
    """``x`` with 3 significant digits, without scientific notation for everyday magnitudes."""
    if x == 0 or not math.isfinite(x):
        return str(x)
    digits = 2 - int(math.floor(math.log10(abs(x))))
    if digits <= 0:
        return f"{round(x, digits):.0f}"
    return f"{x:.{digits}f}"


def print_json(obj: dict[str, Any]) -> None:
    """Print the results as one indented JSON object (machine-readable, diffable)."""
    print(json.dumps(obj, indent=2, sort_keys=False))


_PROCESSOR = re.compile(r"<!-- PROCESSOR (.*?) -->\n")


def write_section(
    name: str, body: str, path: Path = RESULTS_PATH, processor: str | None = None
) -> None:
    """Write ``body`` between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` in ``path``.

    The section is appended when missing and the file is created when absent, so several
    benchmarks can share one results file without overwriting each other.

    With ``processor`` (a :func:`processor_line`), the section keeps one block per processor
    seen, each after a ``<!-- PROCESSOR ... -->`` line: the block of this processor is
    replaced (or appended after the others), those of other processors stay. Text of the
    section from before such blocks existed stays at its top. Without it the whole section is
    replaced.
    """
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = path.read_text() if path.is_file() else RESULTS_HEADER
    pattern = re.compile(re.escape(begin) + r"\n?(.*?)" + re.escape(end), re.DOTALL)
    found = pattern.search(text)
    content = body.strip() + "\n"
    if processor is not None:
        if "\n" in processor or "-->" in processor:
            raise ValueError(f"not a processor line: {processor!r}")
        head, blocks = _split_blocks(found.group(1) if found else "")
        blocks[processor] = content
        parts = [head.strip() + "\n"] if head.strip() else []
        parts += [f"<!-- PROCESSOR {key} -->\n{value.strip()}\n" for key, value in blocks.items()]
        content = "\n".join(parts)
    block = f"{begin}\n{content}{end}"
    if found:
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def _split_blocks(content: str) -> tuple[str, dict[str, str]]:
    """A section's text -> (text before any processor block, {processor: block}) in order."""
    pieces = _PROCESSOR.split(content)
    head, rest = pieces[0], pieces[1:]
    return head, {rest[i]: rest[i + 1] for i in range(0, len(rest), 2)}


def randomize_(module: torch.nn.Module, std: float = 0.02, seed: int = 0) -> None:
    """Redraw every parameter: norms to identity (weight 1, bias 0), everything else
    N(0, std^2), reproducibly.

    Speed does not depend on the values, but finite, well-scaled activations keep the run
    representative (no denormals or NaN paths) and make the output check meaningful. Norms are
    recognised by class name (``LayerNorm``, ``Qwen3RMSNorm`` ...) because parameter names
    such as ``ln_post.weight`` do not say so.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            is_norm = "norm" in type(sub).__name__.lower()
            for name, p in sub.named_parameters(recurse=False):
                if is_norm:
                    p.fill_(1.0 if name == "weight" else 0.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * std)
