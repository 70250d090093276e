"""A TTS model folder's parts: what :meth:`~omnispeech.pipelines.tts.TTS.from_pretrained` reads
and :meth:`~omnispeech.pipelines.tts.TTS.save_pretrained` writes.

The layout is the released Qwen3-TTS one: ``config.json`` + safetensors (``talker.*`` and, for
Base models, ``speaker_encoder.*``), the text front end (Qwen tokenizer files, or
``text_frontend.json`` for phonemes), ``speech_tokenizer/`` (the 12 Hz codec) and
``generation_config.json``. Folders trained here may add, in ``config.json``, the single-stream
declaration ``talker_arrangement`` (with the share of unconditioned sequences the talker learnt,
for guidance) and, beside it, ``speaker_contrast.safetensors``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from omnispeech.checkpoint import CheckpointFolder, save_folder
from omnispeech.errors import CheckpointError, InputError
from omnispeech.pipelines.codec import Codec
from omnispeech.pipelines.tts_frontend import load_frontend
from omnispeech.pipelines.tts_generation import read_generation, write_generation
from omnispeech.pipelines.tts_single import (
    ARRANGEMENT_KEY,
    arrangement_entry,
    read_arrangement,
    read_guidance_dropout,
)
from omnispeech.talker import SpeakerContrast, SpeakerEncoder, Talker
from omnispeech.talker.config import qwen3_tts_config

if TYPE_CHECKING:
    from omnispeech.pipelines.tts import TTS


def load_parts(
    path: Path, dtype: torch.dtype, device: str | torch.device, quantize: str | None
) -> dict[str, Any]:
    """The keyword arguments of :class:`~omnispeech.pipelines.tts.TTS` for the folder ``path``
    (arguments as for ``TTS.from_pretrained``).

    Raises:
        CheckpointError: missing parts (tokenizer, ``speech_tokenizer/``) or wrong kind.
        InputError: an unknown ``quantize`` value.
    """
    if quantize not in (None, "int8", "int4"):
        raise InputError(f"quantize must be None, 'int8' or 'int4', got {quantize!r}")
    if quantize == "int8" and dtype == torch.float32:
        dtype = torch.bfloat16  # the fused int8 kernel takes 16-bit activations
    folder = CheckpointFolder(path)
    talker = Talker.from_pretrained(path, dtype=dtype, device=device)
    if quantize == "int8":
        talker.quantize_int8()
    elif quantize == "int4":
        talker.quantize_int4()
    codec_dir = path / "speech_tokenizer"
    if not (codec_dir / "config.json").is_file():
        raise CheckpointError(f"{path}: no speech_tokenizer/ folder (the 12 Hz codec)")
    codec = Codec.from_pretrained(codec_dir, dtype=torch.float32, device=device)
    speaker = None
    if folder.has_prefix("speaker_encoder."):
        speaker = SpeakerEncoder.from_pretrained(path, dtype=dtype, device=device)
    config = json.loads((path / "config.json").read_text())
    return {
        "talker": talker,
        "codec": codec,
        "tokenizer": load_frontend(path),
        "speaker_encoder": speaker,
        "generation": read_generation(path / "generation_config.json"),
        "single": read_arrangement(config),
        "speaker_contrast": SpeakerContrast.load(path) if speaker is not None else None,
        "guidance_dropout": read_guidance_dropout(config),
    }


def save_parts(model: TTS, out: Path) -> None:
    """Write ``model`` as a folder :func:`load_parts` reads back (its codec copied from the
    folder it was loaded from).

    Raises:
        CheckpointError: the model was not loaded from a folder with a codec.
    """
    tensors = {f"talker.{k}": v for k, v in model.talker.state_dict().items()}
    extra: dict = {"tts_model_type": "custom_voice"}
    if model.speaker_encoder is not None:
        tensors.update(
            {f"speaker_encoder.{k}": v for k, v in model.speaker_encoder.state_dict().items()}
        )
        extra = {
            "tts_model_type": "base",
            "speaker_encoder_config": model.speaker_encoder.cfg.to_dict(),
        }
    extra["tokenizer_type"] = "qwen3_tts_tokenizer_12hz"
    if model.single is not None:
        extra[ARRANGEMENT_KEY] = arrangement_entry(model.single, model.guidance_dropout)
    save_folder(out, qwen3_tts_config(model.talker.spec, extra), tensors)
    model.frontend.save(out)
    source = model._source
    if source is None or not (source / "speech_tokenizer").is_dir():
        raise CheckpointError("the codec folder this model was loaded with is unknown")
    if (out / "speech_tokenizer").resolve() != (source / "speech_tokenizer").resolve():
        shutil.copytree(source / "speech_tokenizer", out / "speech_tokenizer")
    write_generation(out / "generation_config.json", model.generation)
    if model.speaker_contrast is not None:
        model.speaker_contrast.save(out)


__all__ = ["load_parts", "save_parts"]
