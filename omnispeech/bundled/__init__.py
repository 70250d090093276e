"""The models omnispeech trains itself and ships inside the package: name -> folder.

Each is a folder in the layout of the released checkpoint it imitates (``config.json``,
safetensors, tokenizer), loaded by the same code; ``from_pretrained()`` with no name and the
command line without ``--model`` use the default of their kind. The recipes that make them
are in the repository's ``recipes/`` folder.
"""

from __future__ import annotations

from pathlib import Path

from omnispeech.errors import CheckpointError

_HERE = Path(__file__).resolve().parent

# name -> subfolder of this package
BUNDLED: dict[str, str] = {
    "omnispeech-asr-small": "asr-small",
    "omnispeech-tts-small": "tts-small",
}
# kind -> the name used when none is given
DEFAULTS: dict[str, str] = {"asr": "omnispeech-asr-small", "tts": "omnispeech-tts-small"}


def bundled_folder(name: str) -> Path | None:
    """The folder of a bundled model by name, or None when the name is not one (or the
    package was installed without its weights)."""
    sub = BUNDLED.get(name)
    if sub is None:
        return None
    folder = _HERE / sub
    return folder if (folder / "config.json").is_file() else None


def default_model(kind: str) -> Path:
    """The bundled model used when no model is named.

    Raises:
        CheckpointError: this installation ships no model of that kind.
    """
    name = DEFAULTS.get(kind)
    folder = bundled_folder(name) if name else None
    if folder is None:
        raise CheckpointError(
            f"no bundled {kind} model in this installation; pass --model FOLDER "
            "(a released Qwen checkpoint or one trained with `omnispeech train`)"
        )
    return folder


__all__ = ["BUNDLED", "DEFAULTS", "bundled_folder", "default_model"]
