"""Which model folder to use when none is named: the environment, then the bundled models.

``find_model("tts")`` answers, in order:

1. the name or folder given by the caller (``--tts-model``);
2. ``$OMNISPEECH_TTS_MODEL`` (``$OMNISPEECH_ASR_MODEL`` for ``asr``);
3. a model shipped inside the package (:mod:`omnispeech.bundled`: a folder under
   ``omnispeech/bundled/`` in the layout of the released checkpoint it imitates);

and None when there is none, so that an app can serve what it has and say once what is
missing. :func:`require_model` raises instead, with one line that says what to pass.
"""

from __future__ import annotations

import os
from pathlib import Path

from omnispeech.bundled import BUNDLED as _BUNDLED_NAMES
from omnispeech.bundled import DEFAULTS as _DEFAULTS
from omnispeech.errors import CheckpointError

# The environment variable that names the default folder of each kind of model.
ENV_VARS = {"tts": "OMNISPEECH_TTS_MODEL", "asr": "OMNISPEECH_ASR_MODEL"}

# Kind -> folder name under omnispeech/bundled/, from the bundled models' own table; a listed
# folder that is not installed (e.g. a source checkout without the weights) is skipped.
BUNDLED: dict[str, str] = {kind: _BUNDLED_NAMES[name] for kind, name in _DEFAULTS.items()}

BUNDLED_ROOT = Path(__file__).parent / "bundled"

# What each kind is, for messages.
_WHAT = {"tts": "text-to-speech (Qwen3-TTS layout)", "asr": "speech recognition (Qwen3-ASR)"}


def _check_kind(kind: str) -> None:
    if kind not in ENV_VARS:
        raise ValueError(f"kind must be one of {sorted(ENV_VARS)}, got {kind!r}")


def bundled_model(kind: str) -> Path | None:
    """The bundled folder of ``kind`` when it is installed, else None."""
    _check_kind(kind)
    name = BUNDLED.get(kind)
    if name is None:
        return None
    path = BUNDLED_ROOT / name
    return path if (path / "config.json").is_file() else None


def find_model(kind: str, name: str | Path | None = None) -> str | None:
    """The model to load for ``kind`` (``"tts"`` or ``"asr"``), or None when none is available.

    Args:
        kind: ``"tts"`` or ``"asr"``.
        name: a folder or hub name given explicitly; returned as is when set.
    """
    _check_kind(kind)
    if name is not None and str(name).strip():
        return str(name)
    env = os.environ.get(ENV_VARS[kind], "").strip()
    if env:
        return env
    bundled = bundled_model(kind)
    return None if bundled is None else str(bundled)


def missing_message(kind: str, option: str) -> str:
    """One line saying that no ``kind`` model is available and how to name one."""
    _check_kind(kind)
    return (
        f"no {_WHAT[kind]} model: pass {option} FOLDER or set ${ENV_VARS[kind]} "
        "(no bundled model is installed)"
    )


def require_model(kind: str, name: str | Path | None = None, option: str = "--model") -> str:
    """Like :func:`find_model`, but raises when there is no model.

    Raises:
        CheckpointError: nothing named, no environment variable, no bundled model.
    """
    found = find_model(kind, name)
    if found is None:
        raise CheckpointError(missing_message(kind, option))
    return found
