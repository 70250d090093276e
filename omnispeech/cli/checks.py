"""Checks the commands run on their options before any model loads.

Loading a large checkpoint takes seconds to minutes; an option that cannot work (a seed
beyond 64 bits, a speed of 0, an output folder that does not exist) must be refused before
that, on one line, with exit status 1 (:class:`click.ClickException`), not after the load or
as a traceback from deep inside torch, numpy or soundfile.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

# torch.Generator.manual_seed takes an unsigned 64-bit seed (a negative one is read modulo
# 2**64 by torch, but a seed printed back to the user should be the one they gave).
SEED_MAX = 2**64 - 1


def check_seed(seed: int | None, option: str = "--seed") -> None:
    """Refuse a seed that torch's generator cannot take (outside 0 .. 2**64 - 1)."""
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise click.ClickException(f"{option} must be between 0 and 2**64 - 1, got {seed}")


def check_speed(speed: float, option: str = "--speed") -> None:
    """Refuse a speed that is not a positive finite number."""
    # `not speed > 0` also refuses NaN, which every comparison answers False.
    if not speed > 0 or speed == float("inf"):
        raise click.ClickException(f"{option} must be a number > 0, got {speed:g}")


def check_output_file(path: Path, option: str = "--output") -> None:
    """Refuse an output file whose folder does not exist, is not a folder, or cannot be
    written, or a path that names an existing folder. ``-`` (standard output) passes."""
    if str(path) == "-":
        return
    if path.is_dir():
        raise click.ClickException(f"{option} {path}: is a folder; give a file name")
    folder = path.parent
    if not folder.exists():
        raise click.ClickException(
            f"{option} {path}: the folder {folder} does not exist (create it first)"
        )
    if not folder.is_dir():
        raise click.ClickException(f"{option} {path}: {folder} is not a folder")
    # os.access answers for this process's user; root passes it on any local folder, and a
    # read-only file system still fails at the write, which the commands report on one line.
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.ClickException(f"{option} {path}: the folder {folder} is not writable")


def check_input_file(path: Path, option: str) -> None:
    """Refuse an input that does not exist or is a folder (say which, not "no such file")."""
    if path.is_dir():
        raise click.ClickException(f"{option} {path}: is a folder, not a file")
    if not path.exists():
        raise click.ClickException(f"{option} {path}: no such file")
