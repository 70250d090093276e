"""omnispeech: the speech side of Qwen3-Omni as standalone, fast, streaming PyTorch modules.

Public API (loaded lazily, so ``import omnispeech`` does not import torch):

- :class:`omnispeech.AudioEncoder` - the AuT encoder (Qwen3-Omni / Qwen3-ASR), offline and
  streaming.
- :class:`omnispeech.ASR` - speech recognition with Qwen3-ASR checkpoints.
- :class:`omnispeech.Code2Wav` - the streaming causal vocoder (Qwen3-Omni, Qwen3-TTS tokenizer).
- :class:`omnispeech.CodecEncoder` - waveform -> codes with the Qwen3-TTS 12 Hz tokenizer.
- :class:`omnispeech.Codec` - both halves of the 12 Hz codec.
- :class:`omnispeech.Talker`, :class:`omnispeech.CodePredictor` - the codec-frame LM and its
  multi-token predictor of the residual codebooks (Qwen3-TTS dense, Qwen3-Omni MoE).
- :class:`omnispeech.SpeakerEncoder` - the Qwen3-TTS ECAPA speaker encoder (voice cloning).
- :class:`omnispeech.TTS` - text to speech with voice cloning, offline or streamed.
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
    "Codec": "omnispeech.pipelines",
    "TTS": "omnispeech.pipelines",
    "VoicePrompt": "omnispeech.pipelines",
    "Talker": "omnispeech.talker",
    "CodePredictor": "omnispeech.talker",
    "SpeakerEncoder": "omnispeech.talker",
    "Code2Wav": "omnispeech.vocoder",
    "Code2WavConfig": "omnispeech.vocoder",
}

if TYPE_CHECKING:
    from omnispeech.codec import CodecEncoder
    from omnispeech.encoder import AudioEncoder, EncoderConfig
    from omnispeech.pipelines import ASR, TTS, Codec, Transcription, VoicePrompt
    from omnispeech.talker import CodePredictor, SpeakerEncoder, Talker
    from omnispeech.vocoder import Code2Wav, Code2WavConfig


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'omnispeech' has no attribute {name!r}")


__all__ = [
    "ASR",
    "TTS",
    "AudioEncoder",
    "Code2Wav",
    "Code2WavConfig",
    "Codec",
    "CodePredictor",
    "CodecEncoder",
    "EncoderConfig",
    "SpeakerEncoder",
    "Talker",
    "Transcription",
    "VoicePrompt",
    "__version__",
]
