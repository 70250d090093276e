"""omnispeech: the speech side of Qwen3-Omni as standalone, fast, streaming PyTorch modules.

Public API (loaded lazily, so ``import omnispeech`` does not import torch):

- :class:`omnispeech.AudioEncoder` - the AuT encoder (Qwen3-Omni / Qwen3-ASR), offline and
  streaming.
- :class:`omnispeech.ASR` - speech recognition with Qwen3-ASR checkpoints.
- :class:`omnispeech.Code2Wav` - the streaming causal vocoder (Qwen3-Omni, Qwen3-TTS tokenizer).
- :class:`omnispeech.CodecEncoder` - waveform -> codes with the Qwen3-TTS 12 Hz tokenizer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "AudioEncoder": "omnispeech.encoder",
    "EncoderConfig": "omnispeech.encoder",
    "ASR": "omnispeech.pipelines",
    "Transcription": "omnispeech.pipelines",
    "CodecEncoder": "omnispeech.codec",
    "Code2Wav": "omnispeech.vocoder",
    "Code2WavConfig": "omnispeech.vocoder",
}

if TYPE_CHECKING:
    from omnispeech.codec import CodecEncoder
    from omnispeech.encoder import AudioEncoder, EncoderConfig
    from omnispeech.pipelines import ASR, Transcription
    from omnispeech.vocoder import Code2Wav, Code2WavConfig


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'omnispeech' has no attribute {name!r}")


__all__ = [
    "ASR",
    "AudioEncoder",
    "Code2Wav",
    "Code2WavConfig",
    "CodecEncoder",
    "EncoderConfig",
    "Transcription",
    "__version__",
]
