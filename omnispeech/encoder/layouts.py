"""Where the audio encoder lives in each supported checkpoint folder.

This is the one place that knows the released layouts (folder: tensor prefix):

- Qwen3-Omni (``qwen3_omni_moe``): ``thinker.audio_tower.``, proj1/proj2 inside the tower.
- Qwen3-ASR, original layout: ``thinker.audio_tower.``, config ``thinker_config.audio_config``.
- Qwen3-ASR ``-hf`` layout: ``model.audio_tower.``; the projector is
  ``model.multi_modal_projector.linear_{1,2}``, read as ``proj1`` / ``proj2``.
- transformers' standalone towers (``qwen3_omni_moe_audio_encoder``, ``qwen3_asr_encoder``, the
  latter without projector): no prefix.
- omnispeech's own ``AudioEncoder.save_pretrained``: ``encoder.``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from omnispeech.checkpoint import CheckpointFolder
from omnispeech.encoder.config import EncoderConfig
from omnispeech.errors import CheckpointError

OWN_MODEL_TYPE = "omnispeech_audio_encoder"


@dataclasses.dataclass(frozen=True)
class EncoderLayout:
    """How to read the encoder out of one folder."""

    config: EncoderConfig
    prefix: str
    kind: str  # human-readable name of the layout, for messages
    projector_prefix: str | None = None  # separate projector (Qwen3-ASR -hf)

    def read(self, folder: CheckpointFolder, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
        """The encoder's tensors under omnispeech's names."""
        state = folder.read(self.prefix, dtype)
        if self.projector_prefix is not None:
            for name, tensor in folder.read(self.projector_prefix, dtype).items():
                layer, _, param = name.partition(".")
                state[
                    {"linear_1": "proj1", "linear_2": "proj2"}.get(layer, layer) + "." + param
                ] = tensor
        return state


def detect_layout(folder: CheckpointFolder) -> EncoderLayout:
    """Recognise the folder's layout from its config and keys.

    Raises:
        CheckpointError: the folder holds no AuT audio encoder (e.g. a TTS codec or an LLM).
    """
    cfg: dict[str, Any] = folder.config
    model_type = cfg.get("model_type", "")
    thinker = cfg.get("thinker_config")
    if model_type == OWN_MODEL_TYPE:
        return EncoderLayout(EncoderConfig.from_dict(cfg["encoder"]), "encoder.", "omnispeech")
    if isinstance(thinker, dict) and "audio_config" in thinker:
        is_omni = model_type.startswith("qwen3_omni")
        enc = EncoderConfig.from_released(
            thinker["audio_config"], pad_short_batches_to_longest=is_omni
        )
        return _checked(
            folder,
            EncoderLayout(enc, "thinker.audio_tower.", "Qwen3-Omni" if is_omni else "Qwen3-ASR"),
        )
    if model_type == "qwen3_asr" and isinstance(cfg.get("audio_config"), dict):
        enc = EncoderConfig.from_released(cfg["audio_config"])
        return _checked(
            folder,
            EncoderLayout(
                enc, "model.audio_tower.", "Qwen3-ASR (hf)", "model.multi_modal_projector."
            ),
        )
    if model_type == "qwen3_omni_moe_audio_encoder":
        enc = EncoderConfig.from_released(cfg, pad_short_batches_to_longest=True)
        return _checked(folder, EncoderLayout(enc, "", "Qwen3-Omni audio encoder"))
    if model_type == "qwen3_asr_encoder":
        enc = EncoderConfig.from_released(cfg, output_dim=None)
        return _checked(folder, EncoderLayout(enc, "", "Qwen3-ASR encoder"))
    raise CheckpointError(
        f"{folder.path}: not an audio-encoder checkpoint (model_type {model_type or 'missing'!r}); "
        "expected a Qwen3-Omni, Qwen3-ASR or omnispeech encoder folder"
    )


def _checked(folder: CheckpointFolder, layout: EncoderLayout) -> EncoderLayout:
    if not folder.has_prefix(layout.prefix + "conv2d1."):
        raise CheckpointError(
            f"{folder.path}: config says {layout.kind} but no tensors under "
            f"'{layout.prefix}conv2d1.'; the weights do not belong to this config"
        )
    return layout
