"""The models omnispeech trains itself and ships inside the package: name -> folder.

Each is a folder in the layout of the released checkpoint it imitates (``config.json``,
safetensors, tokenizer), loaded by the same code; ``from_pretrained()`` with no name and the
command line without ``--model`` use the default of their kind. The recipes that make them
are in the repository's ``recipes/`` folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from omnispeech.errors import CheckpointError

_HERE = Path(__file__).resolve().parent

# name -> subfolder of this package. The codec is the bundled voice's own speech tokenizer: a
# Qwen3-TTS folder holds its codec as speech_tokenizer/, so the codec ships once, there.
BUNDLED: dict[str, str] = {
    "omnispeech-asr-small": "asr-small",
    "omnispeech-tts-small": "tts-small",
    "omnispeech-codec-small": "tts-small/speech_tokenizer",
}
# kind -> the name used when none is given
DEFAULTS: dict[str, str] = {
    "asr": "omnispeech-asr-small",
    "tts": "omnispeech-tts-small",
    "codec": "omnispeech-codec-small",
}


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


def bundled_bytes() -> int:
    """Bytes of every installed bundled model together, each file counted once (a folder may
    lie inside another, as the codec lies inside the voice)."""
    files = {
        p.resolve()
        for name in BUNDLED
        if (folder := bundled_folder(name)) is not None
        for p in folder.rglob("*")
        if p.is_file()
    }
    return sum(p.stat().st_size for p in files)


def store_bf16(model: str | Path, out: str | Path) -> Path:
    """Copy the exported folder ``model`` to ``out`` with every floating tensor of every
    safetensors file (subfolders included) stored in bfloat16 (each file keeps its metadata);
    other files are copied as is and an existing ``out`` is replaced.

    The loaders read any floating tensor at the dtype they run in (float32 by default), so
    16-bit storage halves what a bundled model costs in git and changes only the rounding of
    its weights; the recipes that ship a model say what that rounding changes.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model, out = Path(model), Path(out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(model, out, ignore=shutil.ignore_patterns("*.safetensors"))
    for weights in model.rglob("*.safetensors"):
        tensors = load_file(weights)
        with safe_open(weights, framework="pt") as handle:
            metadata = handle.metadata() or {"format": "pt"}
        half = {
            k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous()
            for k, v in tensors.items()
        }
        save_file(half, out / weights.relative_to(model), metadata=metadata)
    return out


__all__ = [
    "BUNDLED",
    "DEFAULTS",
    "bundled_bytes",
    "bundled_folder",
    "default_model",
    "store_bf16",
]
