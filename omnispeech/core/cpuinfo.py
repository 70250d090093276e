"""The processor omnispeech runs on: its model name and the cache sizes one core sees.

Cache sizes decide how large a tile of work stays in cache (the vocoder's tile plan, see
:mod:`omnispeech.vocoder.tiles`); the benchmarks print them next to every number, since the
same script gives different speeds on processors with different caches.
"""

from __future__ import annotations

import functools
import platform
import re
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else what :mod:`platform` reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


SYS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _bytes(text: str) -> int:
    """``48K`` / ``2048K`` / ``4 MiB`` / ``1M`` -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def cpu_caches(root: Path = SYS_CACHE) -> dict[str, int]:
    """Cache sizes one core sees, in bytes: ``{"L1d", "L1i", "L2", "L3"}`` (those present).

    Read from sysfs (``cpu0/cache/index*``: level, type, size); where that is missing, from
    ``lscpu``, whose totals are divided by their instance count. Shared caches (L3) are given
    whole, as the core can fill all of it.
    """
    caches: dict[str, int] = {}
    try:
        for index in sorted(root.glob("index*")):
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            name = f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")
            caches[name] = _bytes((index / "size").read_text())
    except (OSError, ValueError):
        caches = {}
    if caches:
        return caches
    try:
        text = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return lscpu_caches(text)


def lscpu_caches(text: str) -> dict[str, int]:
    """Per-instance cache sizes from ``lscpu`` output (``L2 cache: 4 MiB (2 instances)``)."""
    caches: dict[str, int] = {}
    pattern = r"^(L\d[di]?) cache:\s*([\d.]+\s*[KMG]?i?B?)(?:\s*\((\d+) instances?\))?"
    for m in re.finditer(pattern, text, re.MULTILINE):
        caches[m.group(1)] = _bytes(m.group(2)) // int(m.group(3) or 1)
    return caches


@functools.cache
def this_cpu() -> tuple[str, tuple[tuple[str, int], ...]]:
    """``(model name, sorted cache sizes)`` of this machine, read once per process."""
    return cpu_model(), tuple(sorted(cpu_caches().items()))


__all__ = ["SYS_CACHE", "cpu_caches", "cpu_model", "lscpu_caches", "this_cpu"]
