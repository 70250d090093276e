"""Where a Code2Wav vocoder lives in each supported checkpoint folder.

The one place that knows the released layouts (folder: tensor prefix):

- Qwen3-Omni (``qwen3_omni_moe``): ``code2wav.``; config ``code2wav_config``.
- Qwen3-TTS-Tokenizer-12Hz (``qwen3_tts_tokenizer_12hz``): ``decoder.``; config
  ``decoder_config`` (the encoder half, ``encoder.``, is never read here).
- omnispeech's own ``Code2Wav.save_pretrained``: ``code2wav.``; config under ``code2wav``.

Inside each prefix the key names are the released ones, unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omnispeech.checkpoint import CheckpointFolder
from omnispeech.errors import CheckpointError
from omnispeech.vocoder.config import Code2WavConfig

OWN_MODEL_TYPE = "omnispeech_code2wav"


@dataclasses.dataclass(frozen=True)
class VocoderLayout:
    """How to read the vocoder out of one folder."""

    config: Code2WavConfig
    prefix: str
    kind: str  # human-readable name of the layout, for messages


def detect_layout(folder: CheckpointFolder) -> VocoderLayout:
    """Recognise the folder's layout from its config and keys.

    Raises:
        CheckpointError: the folder holds no Code2Wav decoder (e.g. an ASR model).
    """
    cfg: dict[str, Any] = folder.config
    model_type = cfg.get("model_type", "")
    if model_type == OWN_MODEL_TYPE:
        layout = VocoderLayout(
            Code2WavConfig.from_dict(cfg["code2wav"]), "code2wav.", "omnispeech Code2Wav"
        )
    elif isinstance(cfg.get("code2wav_config"), dict):
        layout = VocoderLayout(
            Code2WavConfig.from_omni(cfg["code2wav_config"]), "code2wav.", "Qwen3-Omni code2wav"
        )
    elif model_type == "qwen3_tts_tokenizer_12hz" or isinstance(cfg.get("decoder_config"), dict):
        layout = VocoderLayout(
            Code2WavConfig.from_tts_tokenizer(cfg),
            "decoder.",
            "Qwen3-TTS-Tokenizer-12Hz decoder",
        )
    else:
        raise CheckpointError(
            f"{folder.path}: no Code2Wav vocoder here (model_type {model_type!r}); expected a "
            "Qwen3-Omni folder, a Qwen3-TTS-Tokenizer-12Hz folder or an omnispeech vocoder"
        )
    if not folder.has_prefix(layout.prefix):
        raise CheckpointError(
            f"{folder.path}: the config describes a {layout.kind}, but no tensor starts with "
            f"{layout.prefix!r} (an incomplete download, or the talker-less 'Thinking' model?)"
        )
    return layout
