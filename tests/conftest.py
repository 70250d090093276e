"""Shared fixtures: tiny reference models (transformers 5.23.0, the oracle) saved to folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

TINY_AUDIO = dict(
    num_mel_bins=128,
    encoder_layers=2,
    encoder_attention_heads=4,
    encoder_ffn_dim=128,
    d_model=64,
    output_dim=96,
    downsample_hidden_size=32,
    n_window=50,
    n_window_infer=800,
)


# Markers `slow` and `requires_cuda` are registered in pyproject.toml.
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="requires_cuda: no CUDA device on this machine")
    for item in items:
        if "requires_cuda" in item.keywords:
            item.add_marker(skip)


def redraw(module: torch.nn.Module, std: float = 0.1, seed: int = 0) -> None:
    """Random init is tiny in transformers; larger weights make comparisons meaningful."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


def ref_omni_encoder(**overrides):
    from transformers import Qwen3OmniMoeAudioEncoderConfig
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
        Qwen3OmniMoeAudioEncoder,
    )

    cfg = Qwen3OmniMoeAudioEncoderConfig(**{**TINY_AUDIO, **overrides})
    model = Qwen3OmniMoeAudioEncoder._from_config(cfg, attn_implementation="eager").eval()
    redraw(model)
    return model


def write_folder(path: Path, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """A checkpoint folder in an arbitrary (e.g. released) layout."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
    return path


@pytest.fixture(params=[True, False], ids=["wide", "avx2"])
def int4_width(request, monkeypatch):
    """Each register width of our int4 kernel in turn (AVX-512 reads groups of 64 columns in
    pairs and leaves an odd count's last group to AVX2); the wide case is skipped on a
    processor without AVX-512BW, where the AVX2 case covers it."""
    from omnispeech.core.quant import blocks_kernel

    kernel = blocks_kernel()
    if kernel is None:
        pytest.skip("our int4 kernel needs an x86 CPU with AVX2 and Numba")
    if request.param and not kernel.WIDE:
        pytest.skip("this processor has no AVX-512BW; the AVX2 case covers it")
    monkeypatch.setattr(kernel, "WIDE", request.param)
    return request.param


@pytest.fixture(scope="session")
def omni_encoder_folder(tmp_path_factory):
    """(reference encoder, folder in the released Qwen3-Omni layout ``thinker.audio_tower.*``)."""
    ref = ref_omni_encoder()
    folder = tmp_path_factory.mktemp("omni")
    config = {
        "model_type": "qwen3_omni_moe",
        "thinker_config": {
            "model_type": "qwen3_omni_moe_thinker",
            "audio_config": ref.config.to_dict(),
        },
    }
    tensors = {f"thinker.audio_tower.{k}": v for k, v in ref.state_dict().items()}
    # A released checkpoint also holds the thinker and talker: the encoder must skip them.
    tensors["thinker.model.embed_tokens.weight"] = torch.zeros(8, 4)
    tensors["talker.codec_head.weight"] = torch.zeros(8, 4)
    return ref, write_folder(folder, config, tensors)


@pytest.fixture(scope="session")
def tiny_asr_dir(tmp_path_factory) -> Path:
    """A tiny Qwen3-ASR folder in the transformers ``-hf`` layout, with a tokenizer."""
    from omnispeech.testing import tiny_tokenizer
    from tests.tiny import ref_asr_model

    tok = tiny_tokenizer()
    folder = tmp_path_factory.mktemp("tiny_asr")
    ref_asr_model(tok).save_pretrained(folder)
    tok.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="session")
def ctc_asr_dir(tmp_path_factory, tiny_asr_dir) -> Path:
    """The tiny model with a random CTC head added (it aligns, badly but validly), saved and
    loaded again."""
    from omnispeech.pipelines import ASR

    asr = ASR.from_pretrained(tiny_asr_dir)
    torch.manual_seed(0)
    asr.ctc_head = torch.nn.Linear(asr.encoder.out_dim, asr.decoder.cfg.vocab_size + 1)
    folder = tmp_path_factory.mktemp("ctc_asr")
    asr.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def lively_asr(tmp_path_factory):
    """(reference model, its ``-hf`` folder): a tiny Qwen3-ASR whose answer follows the audio
    (see ``tests.tiny.ref_asr_model(lively=True)``), for tests that compare answers."""
    from omnispeech.testing import tiny_tokenizer
    from tests.tiny import ref_asr_model

    tok = tiny_tokenizer()
    ref = ref_asr_model(tok, lively=True)
    folder = tmp_path_factory.mktemp("lively_asr")
    ref.save_pretrained(folder)
    tok.save(str(folder / "tokenizer.json"))
    return ref, folder
