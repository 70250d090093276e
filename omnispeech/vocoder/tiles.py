"""How wide the vocoder's tiles are on this processor: derived from its caches, or measured.

Code2Wav's conv decoder runs in two kinds of tiles (see :mod:`omnispeech.vocoder.model`):

* **coarse** tiles (in code frames) for the upsampler and the first decoder block, whose weights
  are large: a wide tile makes each weight read serve many samples;
* **fine** tiles (in samples of the coarse stage's output) for the later blocks, whose
  activations are large: a tile whose activations stay in the core's L2 cache runs the 24 kHz
  convs about twice as fast as one pass over the whole signal.

The best fine tile depends on the L2 size: 4 frames on a core with 2 MiB of L2, where a frame
of the released model's last block is 737 KB of float32 activations, 2 frames on a core with
1 MiB. :func:`derived_plan` scales the fine tile with L2 (the share of L2 that one tile's last
activation may fill was set from the optima measured on those two cores);
:func:`measure_plan` times candidates on the machine itself and :func:`store_plan` keeps the
result, which :func:`default_plan` then prefers. Tiles change speed and memory only: the output
is the same for any plan (tested).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from omnispeech.core.cpuinfo import this_cpu
from omnispeech.vocoder.config import Code2WavConfig

# Decoder blocks in the coarse stage (the rest run on fine tiles).
COARSE_BLOCKS = 1
DEFAULT_COARSE_FRAMES = 32
# Frames per fine tile when the L2 size is unknown (a tile that suits small caches too).
FALLBACK_FINE_FRAMES = 2.0
# Share of L2 that one fine tile's last-block output may fill: 1.41 x L2, i.e. 4 frames of the
# released model on a 2 MiB core (4 x 96 channels x 1920 samples x 4 bytes = 2.8 MiB) and 2
# frames on a 1 MiB one. Timed with Code2Wav.tune_tiles, the fastest fine tile was 4 frames on
# an Intel Xeon (2 MiB of L2) and 2-4 frames in three tunings on an AMD EPYC (Zen 4, 1 MiB),
# where 1 frame ran 10-25 % slower: the tile's activations may spill to L3 in part, which
# costs less than the per-call overhead of smaller tiles.
FINE_L2_SHARE = 1.41
FINE_CANDIDATES = (0.25, 0.5, 1.0, 2.0, 4.0)  # frames
COARSE_CANDIDATES = (8, 16, 32, 64)  # frames


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """Tile widths: ``coarse_frames`` code frames; ``fine_samples`` coarse-stage samples.

    ``source`` says where the plan came from: ``"measured"``, ``"caches"`` or ``"fallback"``.
    """

    coarse_frames: int
    fine_samples: int
    source: str = "caches"

    def __post_init__(self) -> None:
        if self.coarse_frames < 1 or self.fine_samples < 1:
            raise ValueError(f"tile sizes must be >= 1, got {self}")


def coarse_hop(cfg: Code2WavConfig) -> int:
    """Coarse-stage output samples per code frame (32 for the released models)."""
    return math.prod((*cfg.upsampling_ratios, *cfg.upsample_rates[:COARSE_BLOCKS]))


def fine_bytes_per_sample(cfg: Code2WavConfig, element_size: int = 4) -> int:
    """Bytes of the last decoder block's output per coarse-stage sample: the largest
    activation a fine tile holds (channels x upsampling after the coarse stage)."""
    channels = cfg.decoder_dim // 2 ** len(cfg.upsample_rates)
    return channels * math.prod(cfg.upsample_rates[COARSE_BLOCKS:]) * element_size


def derived_plan(cfg: Code2WavConfig, caches: dict[str, int], element_size: int = 4) -> TilePlan:
    """The plan the cache sizes give: a fine tile whose last activation fills
    :data:`FINE_L2_SHARE` of L2 (at least one sample), coarse tiles of 32 frames.

    Args:
        cfg: the network shape.
        caches: per-core cache sizes in bytes (``{"L2": ...}``), as
            :func:`omnispeech.core.cpuinfo.cpu_caches` reads them; without ``"L2"`` the plan
            falls back to 2-frame fine tiles.
        element_size: bytes per activation value (4 for float32, 2 for 16-bit types).
    """
    l2 = caches.get("L2")
    if not l2:
        fine = round(FALLBACK_FINE_FRAMES * coarse_hop(cfg))
        return TilePlan(DEFAULT_COARSE_FRAMES, fine, "fallback")
    fine = round(FINE_L2_SHARE * l2 / fine_bytes_per_sample(cfg, element_size))
    return TilePlan(DEFAULT_COARSE_FRAMES, max(1, fine), "caches")


def plan_key(cfg: Code2WavConfig, dtype: torch.dtype, threads: int | None = None) -> str:
    """What a measured plan depends on: processor, caches, threads, network shape, dtype."""
    model, caches = this_cpu()
    shape = hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    threads = torch.get_num_threads() if threads is None else threads
    sizes = ",".join(f"{k}={v}" for k, v in caches)
    return f"{model}|{sizes}|threads={threads}|{shape}|{str(dtype).removeprefix('torch.')}"


def plan_file() -> Path:
    """Where measured plans are kept: ``$OMNISPEECH_CACHE`` (a folder) or
    ``$XDG_CACHE_HOME/omnispeech`` (default ``~/.cache/omnispeech``), file
    ``code2wav_tiles.json``."""
    root = os.environ.get("OMNISPEECH_CACHE")
    if root is None:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "omnispeech")
    return Path(root) / "code2wav_tiles.json"


def _read_plans(path: Path) -> dict[str, dict]:
    try:
        plans = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: plans are only a speed-up
        return {}
    return plans if isinstance(plans, dict) else {}


def stored_plan(key: str, path: Path | None = None) -> TilePlan | None:
    """The measured plan kept under ``key``, or None."""
    entry = _read_plans(path or plan_file()).get(key)
    try:
        return TilePlan(int(entry["coarse_frames"]), int(entry["fine_samples"]), "measured")
    except (TypeError, KeyError, ValueError):
        return None


def store_plan(key: str, plan: TilePlan, path: Path | None = None) -> Path:
    """Keep a measured plan under ``key`` (other keys are left as they are); returns the file."""
    path = path or plan_file()
    plans = _read_plans(path)
    plans[key] = {"coarse_frames": plan.coarse_frames, "fine_samples": plan.fine_samples}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(plans, indent=1, sort_keys=True))
    tmp.replace(path)  # atomic: a concurrent reader sees the old file or the new one
    return path


def default_plan(cfg: Code2WavConfig, dtype: torch.dtype = torch.float32) -> TilePlan:
    """The measured plan for this machine, shape and dtype if one was stored, else the
    derived one."""
    measured = stored_plan(plan_key(cfg, dtype))
    if measured is not None:
        return measured
    element = torch.empty((), dtype=dtype).element_size()
    return derived_plan(cfg, dict(this_cpu()[1]), element)


def measure_plan(
    decode: Callable[[TilePlan], float],
    cfg: Code2WavConfig,
    fine_frames: Sequence[float] = FINE_CANDIDATES,
    coarse_frames: Sequence[int] = COARSE_CANDIDATES,
    progress: Callable[[TilePlan, float], None] | None = None,
) -> TilePlan:
    """Time candidate plans and return the fastest.

    The fine tile is chosen first (at the default coarse tile), then the coarse tile at that
    fine tile: the two stages run one after the other on each coarse tile, so their best widths
    barely interact, and this takes ``len(fine) + len(coarse)`` timings instead of the product.

    Args:
        decode: runs one timed decode with a plan and returns its seconds (lower is better);
            the caller warms up and repeats as it sees fit.
        cfg: the network shape (fine candidates are in frames of it).
        fine_frames: fine tile candidates in code frames (fractions allowed).
        coarse_frames: coarse tile candidates in code frames.
        progress: called with each plan and its time.
    """
    hop = coarse_hop(cfg)

    def timed(plan: TilePlan) -> float:
        seconds = decode(plan)
        if progress is not None:
            progress(plan, seconds)
        return seconds

    fines = sorted({max(1, round(f * hop)) for f in fine_frames})
    fine = min(fines, key=lambda s: timed(TilePlan(DEFAULT_COARSE_FRAMES, s, "measured")))
    coarse = min(coarse_frames, key=lambda c: timed(TilePlan(c, fine, "measured")))
    return TilePlan(coarse, fine, "measured")


def time_decode(vocoder, frames: int = 25, repeats: int = 2, seed: int = 0) -> Callable:
    """A ``decode`` for :func:`measure_plan`: the best of ``repeats`` offline decodes of
    ``frames`` random code frames (2 s by default) with the vocoder's tiles set to the plan."""
    cfg = vocoder.cfg
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, cfg.codebook_size, (1, cfg.num_quantizers, frames), generator=gen)

    def run(plan: TilePlan) -> float:
        vocoder.set_tiles(plan)
        vocoder.decode(codes)  # warm-up: first-call allocations and kernel compilation
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            vocoder.decode(codes)
            best = min(best, time.perf_counter() - start)
        return best

    return run


__all__ = [
    "COARSE_BLOCKS",
    "TilePlan",
    "coarse_hop",
    "default_plan",
    "derived_plan",
    "fine_bytes_per_sample",
    "measure_plan",
    "plan_file",
    "plan_key",
    "store_plan",
    "stored_plan",
    "time_decode",
]
