"""``generation_config.json``: the sampling settings a Qwen3-TTS folder declares.

The released file names the talker's settings plainly (``temperature``, ``top_k``, ...) and the
code predictor's with a ``subtalker_`` prefix; keys it leaves out take the released defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

from omnispeech.core.sampling import SamplingConfig
from omnispeech.errors import CheckpointError
from omnispeech.talker import GenerationConfig


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
    return GenerationConfig(talker, predictor)


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
    path.write_text(json.dumps(data, indent=2) + "\n")


__all__ = ["read_generation", "write_generation"]
