"""Saved voices on disk: a reference clip is uploaded once and reused by name.

Each voice is two files in one folder: ``NAME.safetensors`` (the
:class:`~omnispeech.pipelines.VoicePrompt`: speaker vector, and for in-context cloning the
clip's codes and transcript ids) and ``NAME.json`` (when it was made, from which transcript).
Writes go to a temporary name first and are renamed into place, so a reader never sees half a
voice and two workers saving at once leave one complete voice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from omnispeech.errors import InputError

if TYPE_CHECKING:
    from omnispeech.pipelines import VoicePrompt

# Names become file names: letters, digits, '-', '_' and '.', not starting with '.'.
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")


class VoiceNotFound(InputError):
    """No saved voice of that name."""


@dataclasses.dataclass(frozen=True)
class VoiceInfo:
    """What a listing says about a saved voice.

    Attributes:
        name: the voice's name.
        created_at: Unix time (seconds) when it was saved.
        in_context: True when the clip's transcript was given (closest imitation).
        ref_text: that transcript, or None.
    """

    name: str
    created_at: int
    in_context: bool
    ref_text: str | None = None


def check_name(name: str) -> str:
    """``name`` when it can name a voice file, else an :class:`InputError`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(
            f"voice name {name!r} is not allowed: use 1-64 letters, digits, '-', '_' or '.', "
            "not starting with '.'"
        )
    return name


class VoiceStore:
    """A folder of saved voices.

    Args:
        root: the folder (created when missing).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _paths(self, name: str) -> tuple[Path, Path]:
        check_name(name)
        return self.root / f"{name}.safetensors", self.root / f"{name}.json"

    def __contains__(self, name: str) -> bool:
        try:
            return self._paths(name)[0].is_file()
        except InputError:
            return False

    def names(self) -> list[str]:
        """Saved voice names, sorted."""
        return sorted(p.stem for p in self.root.glob("*.safetensors") if _NAME.match(p.stem))

    def info(self, name: str) -> VoiceInfo:
        """The listing entry of one voice.

        Raises:
            VoiceNotFound: no such voice.
        """
        weights, meta_path = self._paths(name)
        if not weights.is_file():
            raise VoiceNotFound(f"no saved voice named {name!r}")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}  # a voice copied in by hand, without its side file
        return VoiceInfo(
            name=name,
            created_at=int(meta.get("created_at", weights.stat().st_mtime)),
            in_context=bool(meta.get("in_context", False)),
            ref_text=meta.get("ref_text"),
        )

    def list(self) -> list[VoiceInfo]:
        """Every saved voice, sorted by name."""
        out = []
        for name in self.names():
            try:
                out.append(self.info(name))
            except VoiceNotFound:
                continue  # deleted while listing
        return out

    def save(self, name: str, voice: VoicePrompt, ref_text: str | None = None) -> VoiceInfo:
        """Store ``voice`` as ``name`` (replacing a voice of that name)."""
        weights, meta_path = self._paths(name)
        info = VoiceInfo(name, int(time.time()), voice.in_context, ref_text)
        with self._lock:
            fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".part")
            os.close(fd)
            try:
                voice.save(tmp)
                os.replace(tmp, weights)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            meta_path.write_text(json.dumps(dataclasses.asdict(info)) + "\n")
        return info

    def load(self, name: str) -> VoicePrompt:
        """The saved voice ``name``.

        Raises:
            VoiceNotFound: no such voice.
        """
        from omnispeech.pipelines import VoicePrompt

        weights, _ = self._paths(name)
        if not weights.is_file():
            raise VoiceNotFound(f"no saved voice named {name!r}")
        return VoicePrompt.load(weights)

    def delete(self, name: str) -> None:
        """Remove the voice ``name``.

        Raises:
            VoiceNotFound: no such voice.
        """
        weights, meta_path = self._paths(name)
        with self._lock:
            if not weights.is_file():
                raise VoiceNotFound(f"no saved voice named {name!r}")
            weights.unlink()
            meta_path.unlink(missing_ok=True)
