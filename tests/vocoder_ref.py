"""Tiny Code2Wav reference models (transformers 5.23.0) and the shipped Qwen3-TTS golden files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.conftest import write_folder

TINY_CODE2WAV = dict(
    codebook_size=64,
    hidden_size=32,
    num_attention_heads=4,
    num_key_value_heads=4,
    sliding_window=72,
    intermediate_size=64,
    num_hidden_layers=2,
    num_quantizers=16,
    decoder_dim=48,
    upsample_rates=[8, 5, 4, 3],
    upsampling_ratios=[2, 2],
)

GOLDEN = Path(__file__).parent / "data" / "qwen_tts_tokenizer_tiny"


def redraw_vocoder(module: torch.nn.Module, seed: int = 0) -> None:
    """Weights at a scale where the audio is O(0.1) and rarely clipped.

    transformers' init gives ~1e-3 audio (any bug would hide under a 1e-5 tolerance); too
    large weights saturate the final clamp (which would hide bugs as well).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith(("alpha", "beta")):
                p.copy_(0.3 * noise)
            elif "scale" in name or "gamma" in name:
                p.copy_(0.1 + 0.9 * torch.rand(p.shape, generator=g))
            elif p.dim() >= 2:
                p.copy_(0.5 * noise / p[0].numel() ** 0.5)
            elif "norm" in name:
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.1 * noise)


def ref_code2wav(seed: int = 0, **overrides):
    """transformers' ``Qwen3OmniMoeCode2Wav`` (eager attention) at a tiny size."""
    from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import (
        Qwen3OmniMoeCode2WavConfig,
    )
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import Qwen3OmniMoeCode2Wav

    cfg = Qwen3OmniMoeCode2WavConfig(**{**TINY_CODE2WAV, **overrides})
    model = Qwen3OmniMoeCode2Wav._from_config(cfg, attn_implementation="eager").eval()
    redraw_vocoder(model, seed)
    return model


def write_omni_folder(path: Path, ref, extra: dict[str, torch.Tensor] | None = None) -> Path:
    """A folder in the released Qwen3-Omni layout holding ``code2wav.*`` (and ``extra``)."""
    tensors = {f"code2wav.{k}": v for k, v in ref.state_dict().items()}
    config = {"model_type": "qwen3_omni_moe", "code2wav_config": ref.config.to_dict()}
    return write_folder(path, config, {**tensors, **(extra or {})})


def golden_decoder_cases() -> dict[str, np.ndarray]:
    """Codes and the qwen-tts decoder's outputs (see tests/golden/)."""
    with np.load(GOLDEN / "decoder_cases.npz") as data:
        return {k: data[k] for k in data.files}
