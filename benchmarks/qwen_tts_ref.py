"""The qwen-tts 0.1.1 reference codec at the released Qwen3-TTS-Tokenizer-12Hz shapes, for
the codec benchmark: building it with well-scaled random weights, test audio, and its encode.

Only the two 12 Hz module files of qwen-tts are imported (its package ``__init__`` imports the
25 Hz tokenizer, which needs torchaudio); see ``bench_codec.py`` for the side environment.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import math
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 24_000
HOP = 1920  # samples per code frame (12.5 Hz)
WINDOW = 250  # the encoder's configured sliding_window, in 25 Hz frames
VALID_QUANTIZERS = 16
REQUIRED = {"qwen-tts": "0.1.1", "transformers": "4.57.3"}
MISSING = (
    "qwen-tts 0.1.1 (with transformers 4.57.3) is not importable by {python}: run "
    "`/tmp/venv-qwentts/bin/python -m benchmarks.bench_codec` after creating that "
    "environment as the docstring of benchmarks/bench_codec.py says"
)

# The released encoder_config: MimiConfig's defaults, stated explicitly.
ENCODER_CONFIG: dict[str, Any] = {
    "sampling_rate": SAMPLE_RATE,
    "frame_rate": 12.5,
    "audio_channels": 1,
    "hidden_size": 512,
    "num_filters": 64,
    "num_residual_layers": 1,
    "upsampling_ratios": [8, 6, 5, 4],
    "kernel_size": 7,
    "last_kernel_size": 3,
    "residual_kernel_size": 3,
    "dilation_growth_rate": 2,
    "use_causal_conv": True,
    "pad_mode": "constant",
    "compress": 2,
    "trim_right_ratio": 1.0,
    "codebook_size": 2048,
    "codebook_dim": 256,
    "num_quantizers": 32,
    "use_conv_shortcut": False,
    "vector_quantization_hidden_dimension": 256,
    "num_semantic_quantizers": 1,
    "upsample_groups": 512,
    "num_hidden_layers": 8,
    "intermediate_size": 2048,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "hidden_act": "gelu",
    "max_position_embeddings": 8000,
    "norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "sliding_window": WINDOW,
    "layer_scale_initial_scale": 0.01,
    "use_cache": False,
}
# The published decoder_config (unused by encoding, but part of the saved folder).
DECODER_CONFIG: dict[str, Any] = {
    "codebook_size": 2048,
    "codebook_dim": 512,
    "hidden_size": 512,
    "head_dim": 64,
    "latent_dim": 1024,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "intermediate_size": 1024,
    "hidden_act": "silu",
    "num_hidden_layers": 8,
    "num_quantizers": 16,
    "max_position_embeddings": 8000,
    "rope_theta": 10000,
    "rms_norm_eps": 1e-5,
    "sliding_window": 72,
    "layer_scale_initial_scale": 0.01,
    "upsample_rates": [8, 5, 4, 3],
    "upsampling_ratios": [2, 2],
    "decoder_dim": 1536,
    "attention_bias": False,
    "attention_dropout": 0.0,
}
TOP_CONFIG: dict[str, Any] = {
    "encoder_valid_num_quantizers": VALID_QUANTIZERS,
    "input_sample_rate": SAMPLE_RATE,
    "output_sample_rate": SAMPLE_RATE,
    "decode_upsample_rate": HOP,
    "encode_downsample_rate": HOP,
}


# -- the reference model -------------------------------------------------------------------------
@functools.cache
def load_reference() -> tuple[Any, Any]:
    """qwen-tts' 12 Hz configuration and modeling modules, without its package ``__init__``.

    Exits with one line when qwen-tts or the transformers it pins is not importable here.
    """
    missing = MISSING.format(python=sys.executable)
    try:
        versions = {dist: importlib.metadata.version(dist) for dist in REQUIRED}
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(missing) from None
    if versions != REQUIRED:
        raise SystemExit(f"{missing} (found {versions})")
    spec = importlib.util.find_spec("qwen_tts")
    if spec is None or spec.origin is None:
        raise SystemExit(missing)
    root = Path(spec.origin).parent
    for name, sub in (
        ("qwen_tts", "."),
        ("qwen_tts.core", "core"),
        ("qwen_tts.core.tokenizer_12hz", "core/tokenizer_12hz"),
    ):
        if name not in sys.modules:  # bare parents: their __init__ files are not executed
            module = types.ModuleType(name)
            module.__path__ = [str(root / sub)]
            sys.modules[name] = module
    package = "qwen_tts.core.tokenizer_12hz"
    try:
        cfg = importlib.import_module(f"{package}.configuration_qwen3_tts_tokenizer_v2")
        mdl = importlib.import_module(f"{package}.modeling_qwen3_tts_tokenizer_v2")
    except ImportError as exc:
        raise SystemExit(f"{missing} ({exc})") from None
    return cfg, mdl


def _redraw(module: nn.Module, gen: torch.Generator) -> None:
    """Encoder weights that keep activations well scaled: convs and linears N(0, 1/fan_in),
    biases N(0, 0.05^2), LayerNorms 1 + N(0, 0.1^2) / N(0, 0.05^2), LayerScales U(0.1, 1)."""

    def normal(shape: torch.Size, std: float) -> torch.Tensor:
        return torch.randn(shape, generator=gen) * std

    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, (nn.Conv1d, nn.Linear)):
                fan_in = sub.weight[0].numel()
                sub.weight.copy_(normal(sub.weight.shape, 1 / math.sqrt(fan_in)))
                if sub.bias is not None:
                    sub.bias.copy_(normal(sub.bias.shape, 0.05))
            elif isinstance(sub, nn.LayerNorm):
                sub.weight.copy_(1 + normal(sub.weight.shape, 0.1))
                sub.bias.copy_(normal(sub.bias.shape, 0.05))
            elif hasattr(sub, "scale") and isinstance(sub.scale, nn.Parameter):
                sub.scale.copy_(0.1 + 0.9 * torch.rand(sub.scale.shape, generator=gen))


def reference_latent(ref: Any, wav: torch.Tensor) -> torch.Tensor:
    """The reference's continuous latent ``[B, 512, T]`` (what its quantizer receives)."""
    enc = ref.encoder
    h = enc.encoder(wav)
    h = enc.encoder_transformer(h.transpose(1, 2), return_dict=True)[0].transpose(1, 2)
    return enc.downsample(h)


def _redraw_codebooks(ref: Any, calibration: torch.Tensor, gen: torch.Generator) -> None:
    """Codebook vectors scaled to what each residual quantizer receives, so that many entries
    are used: layer j of a quantizer gets N(0, (0.5 * rms * 0.9^j)^2) vectors, ``rms`` being
    that of its projected input on ``calibration``; usage counts U(0.5, 3) (positive, and not
    1, so that the division by them matters)."""
    with torch.no_grad():
        latent = reference_latent(ref, calibration)
        quantizer = ref.encoder.quantizer
        for rvq in (
            quantizer.semantic_residual_vector_quantizer,
            quantizer.acoustic_residual_vector_quantizer,
        ):
            rms = float(rvq.input_proj(latent).pow(2).mean().sqrt())
            for j, layer in enumerate(rvq.layers):
                book = layer.codebook
                vectors = torch.randn(book.embed_sum.shape, generator=gen) * (0.5 * rms * 0.9**j)
                usage = 0.5 + 2.5 * torch.rand(book.cluster_usage.shape, generator=gen)
                book.cluster_usage.copy_(usage)
                book.embed_sum.copy_(vectors * usage[:, None])
                book.initialized.fill_(1.0)
                book._embed = None  # the reference caches embed_sum / usage on first use


def build_models(folder: Path) -> tuple[Any, Any]:
    """The reference at the released shapes with redrawn encoder weights, saved to ``folder``
    with ``save_pretrained``, and omnispeech's ``CodecEncoder`` loaded from that folder."""
    from omnispeech.codec import CodecEncoder

    cfg_mod, mdl_mod = load_reference()
    config = cfg_mod.Qwen3TTSTokenizerV2Config(
        encoder_config=dict(ENCODER_CONFIG), decoder_config=dict(DECODER_CONFIG), **TOP_CONFIG
    )
    torch.manual_seed(0)
    ref = mdl_mod.Qwen3TTSTokenizerV2Model(config).eval()
    gen = torch.Generator().manual_seed(20240601)
    _redraw(ref.encoder, gen)
    _redraw_codebooks(ref, speech_like(4.0, seed=99)[None], gen)
    ref.save_pretrained(folder, safe_serialization=True)
    return ref, CodecEncoder.from_pretrained(folder)


# -- inputs ------------------------------------------------------------------------------------
def speech_like(seconds: float, seed: int) -> torch.Tensor:
    """``[1, n]`` float32 at 24 kHz: a voiced part (harmonics of a wandering pitch), repeating
    chirps and noise under a syllable-rate envelope with pauses; peak 0.5, seeded."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    f0 = 130 + 35 * np.sin(2 * np.pi * 0.27 * t + rng.uniform(0, 6)) + 12 * np.sin(2 * np.pi * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voiced = sum(np.sin(h * phase + rng.uniform(0, 6)) / h for h in range(1, 13))
    period = 1.7
    tc = np.mod(t, period)
    chirp = np.sin(2 * np.pi * (300 * tc + (3500 - 300) * tc**2 / (2 * period)))
    noise = rng.standard_normal(n)
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)) ** 2
    pauses = np.repeat(rng.random(int(np.ceil(seconds / 0.6))) > 0.2, int(0.6 * SAMPLE_RATE))[:n]
    sig = (0.6 * voiced + 0.25 * chirp + 0.1 * noise) * syllables * (0.05 + 0.95 * pauses)
    sig += 0.01 * rng.standard_normal(n)
    return torch.from_numpy((0.5 * sig / np.abs(sig).max()).astype(np.float32))[None]


def encode_reference(ref: Any, wav: torch.Tensor) -> torch.Tensor:
    """As qwen-tts encodes: ``model.encode(wav [B, S], padding_mask [B, S])`` -> per item
    ``[T, 16]``; returned stacked as ``[B, 16, T]`` (all items have the same length here)."""
    mask = torch.ones(wav.shape, dtype=torch.long)
    codes = ref.encode(wav, mask, return_dict=True).audio_codes
    return torch.stack([c.transpose(0, 1) for c in codes])
