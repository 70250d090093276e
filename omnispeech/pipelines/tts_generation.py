"""``generation_config.json``: the sampling settings a Qwen3-TTS folder declares.

The released file names the talker's settings plainly (``temperature``, ``top_k``, ...) and the
code predictor's with a ``subtalker_`` prefix; keys it leaves out take the released defaults.
``guidance`` (classifier-free guidance on codebook 0, see
:class:`~omnispeech.talker.GenerationConfig`) is this project's own key, written only when it is
not 1, so a folder without guidance keeps the released file's keys.
"""

from __future__ import annotations

import json
from pathlib import Path

from omnispeech.core.sampling import SamplingConfig
from omnispeech.errors import CheckpointError, InputError
from omnispeech.talker import MAX_GUIDANCE, GenerationConfig


def read_generation(path: Path) -> GenerationConfig:
    """Sampling settings of ``generation_config.json`` (released defaults when absent)."""
    if not path.is_file():
        return GenerationConfig()
    try:
        return _generation_from(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: unusable sampling settings ({exc})") from None


def _generation_from(data: dict) -> GenerationConfig:
    talker = SamplingConfig(
        do_sample=data.get("do_sample", True),
        temperature=data.get("temperature", 0.9),
        top_k=data.get("top_k", 50),
        top_p=data.get("top_p", 1.0),
        repetition_penalty=data.get("repetition_penalty", 1.05),
    )
    predictor = SamplingConfig(
        do_sample=data.get("subtalker_dosample", True),
        temperature=data.get("subtalker_temperature", 0.9),
        top_k=data.get("subtalker_top_k", 50),
        top_p=data.get("subtalker_top_p", 1.0),
    )
    return GenerationConfig(talker, predictor, guidance=float(data.get("guidance", 1.0)))


def write_generation(path: Path, gen: GenerationConfig) -> None:
    """Write ``gen`` as a released ``generation_config.json`` (what :func:`read_generation`
    reads back)."""
    t, p = gen.talker, gen.code_predictor
    data = {
        "do_sample": t.do_sample,
        "temperature": t.temperature,
        "top_k": t.top_k,
        "top_p": t.top_p,
        "repetition_penalty": t.repetition_penalty,
        "subtalker_dosample": p.do_sample,
        "subtalker_temperature": p.temperature,
        "subtalker_top_k": p.top_k,
        "subtalker_top_p": p.top_p,
    }
    if gen.guidance != 1.0:
        data["guidance"] = gen.guidance
    path.write_text(json.dumps(data, indent=2) + "\n")


def check_guidance(scale: float, learnt: bool) -> float:
    """``scale`` as a guidance scale for a talker that ``learnt`` unconditioned sequences
    (a single-stream talker trained with ``data.guidance_dropout``) or not.

    Raises:
        InputError: not a number in [1, MAX_GUIDANCE], or above 1 for a talker that did not
            learn them.
    """
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise InputError(f"guidance must be a number, got {scale!r}") from None
    if not 1.0 <= scale <= MAX_GUIDANCE:
        raise InputError(f"guidance must lie between 1 (none) and {MAX_GUIDANCE:g}, got {scale:g}")
    if scale != 1.0 and not learnt:
        raise InputError(
            "guidance needs a single-stream talker trained with unconditioned sequences "
            "(data.guidance_dropout); this model's talker never learnt them"
        )
    return scale


__all__ = ["check_guidance", "read_generation", "write_generation"]
