"""Benchmark bookkeeping: the processor description (model, cores, caches) and RESULTS.md
sections that keep one block per processor seen."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.common import RESULTS_HEADER, processor_line, write_section
from omnispeech.core.cpuinfo import cpu_caches, lscpu_caches

XEON = "Intel Xeon, 2 logical cores (L1d 48 KiB, L2 2 MiB)"
EPYC = "AMD EPYC 7B13, 2 logical cores (L1d 32 KiB, L2 512 KiB)"


def _fake_sysfs(root: Path, entries: list[tuple[str, str, str]]) -> Path:
    for i, (level, kind, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(level + "\n")
        (d / "type").write_text(kind + "\n")
        (d / "size").write_text(size + "\n")
    return root


def test_caches_from_sysfs(tmp_path):
    root = _fake_sysfs(
        tmp_path,
        [("1", "Data", "48K"), ("1", "Instruction", "64K"), ("2", "Unified", "2048K"),
         ("3", "Unified", "491520K")],
    )  # fmt: skip
    caches = cpu_caches(root)
    assert caches == {"L1d": 48 << 10, "L1i": 64 << 10, "L2": 2 << 20, "L3": 480 << 20}
    line = processor_line({"cpu": "Xeon", "logical_cores": 2, "caches": caches})
    assert line == "Xeon, 2 logical cores (L1d 48 KiB, L1i 64 KiB, L2 2 MiB, L3 480 MiB)"


def test_caches_from_lscpu_are_per_instance():
    text = (
        "Model name:  AMD EPYC 7B13\n"
        "L1d cache:                               64 KiB (2 instances)\n"
        "L1i cache:                               64 KiB (2 instances)\n"
        "L2 cache:                                1 MiB (2 instances)\n"
        "L3 cache:                                32 MiB (1 instance)\n"
    )
    assert lscpu_caches(text) == {
        "L1d": 32 << 10,
        "L1i": 32 << 10,
        "L2": 512 << 10,
        "L3": 32 << 20,
    }


def test_this_machine_has_a_description():
    line = processor_line(
        {"cpu": "x", "logical_cores": 2, "caches": cpu_caches()}
    )  # whatever this machine reports, it is one line
    assert "\n" not in line and line.startswith("x, 2 logical cores")


def test_one_block_per_processor(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_section("other", "## Other\nby hand", path)
    write_section("tts", "## TTS\nxeon run 1", path, processor=XEON)
    write_section("tts", "## TTS\nepyc run 1", path, processor=EPYC)
    write_section("tts", "## TTS\nxeon run 2", path, processor=XEON)
    text = path.read_text()
    assert text.startswith(RESULTS_HEADER)
    assert "xeon run 1" not in text  # the same processor's block is replaced
    assert text.count("<!-- BEGIN tts -->") == 1 and text.count("<!-- END tts -->") == 1
    # each processor once, in the order first seen, the other section untouched
    assert text.index(f"<!-- PROCESSOR {XEON} -->") < text.index(f"<!-- PROCESSOR {EPYC} -->")
    assert text.index("xeon run 2") < text.index("epyc run 1")
    assert text.count("<!-- PROCESSOR") == 2
    assert "## Other\nby hand" in text
    # rewriting again changes nothing but that block
    write_section("tts", "## TTS\nxeon run 2", path, processor=XEON)
    assert path.read_text() == text


def test_earlier_text_of_a_section_is_kept(tmp_path):
    """A section written before blocks per processor existed keeps its text at its top."""
    path = tmp_path / "RESULTS.md"
    write_section("codec", "## Codec\nold run on some Xeon", path)
    write_section("codec", "## Codec\nnew run", path, processor=EPYC)
    text = path.read_text()
    begin = text.index("<!-- BEGIN codec -->")
    assert begin < text.index("old run") < text.index(f"<!-- PROCESSOR {EPYC} -->")
    assert text.index("new run") < text.index("<!-- END codec -->")
    # and a write without a processor still replaces the whole section
    write_section("codec", "## Codec\nby hand", path)
    assert "new run" not in path.read_text() and "old run" not in path.read_text()


def test_processor_line_must_be_one_line(tmp_path):
    with pytest.raises(ValueError):
        write_section("x", "body", tmp_path / "R.md", processor="a\nb")
