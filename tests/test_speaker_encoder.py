"""The Qwen3-TTS speaker encoder equals the reference (qwen-tts 0.1.1) on stored golden files.

Golden files: ``tests/data/qwen_tts_speaker_tiny`` (made by
``tests/golden/make_qwen_tts_speaker.py``; see its README): a tiny encoder in the released
layout, three clips, the reference's mel features and embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from omnispeech.checkpoint import build_on_meta
from omnispeech.errors import (
    CheckpointError,
    ConfigError,
    EmptyAudioError,
    InputError,
    InvalidAudioError,
)
from omnispeech.talker import SpeakerEncoder, SpeakerEncoderConfig
from omnispeech.talker.speaker import MIN_SECONDS, speaker_log_mel
from tests.conftest import write_folder

GOLDEN = Path(__file__).parent / "data" / "qwen_tts_speaker_tiny"
# Embeddings of magnitude ~4: within 1e-6 of the stored ones here, and the reference itself,
# regenerated on another processor, moved by up to 7e-7; 1e-5 leaves room for both anywhere.
TOL = 1e-5
MEL_TOL = 2e-4  # log-mel values down to -11.5 (see test_mel_matches_reference)


@pytest.fixture(scope="module")
def cases() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / "cases.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder.from_pretrained(GOLDEN)


def _wav24(cases: dict[str, np.ndarray], name: str) -> torch.Tensor:
    """The clip at 24 kHz (the reference's resampled copy for clips at other rates)."""
    return torch.from_numpy(cases.get(f"wav24_{name}", cases[f"wav_{name}"]))


# -- parity ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a", "b", "c16k"])
def test_mel_matches_reference(cases, name):
    mel = speaker_log_mel(_wav24(cases, name)[None])[0]
    expected = torch.from_numpy(cases[f"mel_{name}"])
    assert mel.shape == expected.shape == (_wav24(cases, name).shape[0] // 256, 128)
    # The log turns the FFT's last-bit differences between processors into larger ones in
    # near-silent bins: 7.2e-5 at a bin of log-magnitude -9.1 on one Xeon, 5e-7 where the
    # files were made. Every bin stays within MEL_TOL, and on average they agree to 1e-6.
    diff = (mel - expected).abs()
    assert diff.max() < MEL_TOL and diff.mean() < 1e-6


@pytest.mark.parametrize("name", ["a", "b"])
def test_embedding_matches_reference(encoder, cases, name):
    expected = torch.from_numpy(cases[f"emb_{name}"])
    assert expected.abs().max() > 0.5  # not a comparison of two near-zero vectors
    got = encoder.embed(torch.from_numpy(cases[f"wav_{name}"]))
    assert got.shape == (1, encoder.embedding_size) == (1, 24)
    assert (got[0] - expected).abs().max() < TOL
    # The network alone, on the reference's own mel frames.
    from_mel = encoder(torch.from_numpy(cases[f"mel_{name}"])[None])[0]
    assert (from_mel - expected).abs().max() < TOL


def test_resampled_array_and_file_match_reference(encoder, cases, tmp_path):
    """16 kHz input: resampled to 24 kHz (soxr HQ, like librosa.resample) then embedded."""
    wav16 = cases["wav_c16k"]
    assert int(cases["rate_c16k"]) == 16000
    expected = torch.from_numpy(cases["emb_c16k"])
    got = encoder.embed_audio(wav16, 16000)
    assert got.shape == (24,) and torch.isfinite(got).all()
    assert (got - expected).abs().max() < TOL
    path = tmp_path / "ref16k.wav"
    sf.write(path, wav16, 16000, subtype="FLOAT")
    assert (encoder.embed_audio(path) - expected).abs().max() < TOL
    # Two identical channels downmix to the same clip.
    stereo = np.stack([wav16, wav16])
    assert (encoder.embed_audio(stereo, 16000) - expected).abs().max() < TOL


def test_batch_of_two_equals_each_alone(encoder, cases):
    n = cases["wav_a"].shape[0]
    batch = torch.stack([torch.from_numpy(cases["wav_a"]), torch.from_numpy(cases["wav_b"][:n])])
    together = encoder.embed(batch)
    assert together.shape == (2, 24)
    for i in range(2):
        alone = encoder.embed(batch[i])[0]
        assert (together[i] - alone).abs().max() < TOL
    assert (together[0] - torch.from_numpy(cases["emb_a"])).abs().max() < TOL


# -- checkpoints -----------------------------------------------------------------------------
def test_loads_the_released_layout(encoder):
    config = json.loads((GOLDEN / "config.json").read_text())
    assert encoder.cfg == SpeakerEncoderConfig.from_released(config["speaker_encoder_config"])
    stored = load_file(GOLDEN / "model.safetensors")
    mine = encoder.state_dict()
    assert sorted(stored) == sorted(f"speaker_encoder.{k}" for k in mine)
    assert all(torch.equal(stored[f"speaker_encoder.{k}"], v) for k, v in mine.items())


def test_save_load_round_trip(encoder, cases, tmp_path):
    encoder.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["speaker_encoder_config"] == encoder.cfg.to_dict()
    assert all(k.startswith("speaker_encoder.") for k in load_file(tmp_path / "model.safetensors"))
    again = SpeakerEncoder.from_pretrained(tmp_path)
    wav = torch.from_numpy(cases["wav_a"])
    assert torch.equal(again.embed(wav), encoder.embed(wav))


def test_strict_keys_and_wrong_checkpoints(tmp_path):
    config = json.loads((GOLDEN / "config.json").read_text())
    tensors = load_file(GOLDEN / "model.safetensors")
    missing = dict(tensors)
    del missing["speaker_encoder.asp.conv.bias"]
    # Other components' tensors beside the encoder are not read.
    missing["talker.codec_head.weight"] = torch.ones(2, 2)
    with pytest.raises(CheckpointError, match=r"missing keys \[asp\.conv\.bias\]"):
        SpeakerEncoder.from_pretrained(write_folder(tmp_path / "missing", config, missing))
    extra = dict(tensors, **{"speaker_encoder.fc.scale": torch.ones(1)})
    with pytest.raises(CheckpointError, match=r"unexpected keys \[fc\.scale\]"):
        SpeakerEncoder.from_pretrained(write_folder(tmp_path / "extra", config, extra))
    custom_voice = {"model_type": "qwen3_tts", "tts_model_type": "custom_voice"}
    with pytest.raises(CheckpointError, match="only Qwen3-TTS Base"):
        SpeakerEncoder.from_pretrained(write_folder(tmp_path / "cv", custom_voice, tensors))
    no_weights = {"talker.codec_head.weight": torch.ones(2, 2)}
    with pytest.raises(CheckpointError, match="no speaker_encoder"):
        SpeakerEncoder.from_pretrained(write_folder(tmp_path / "empty", config, no_weights))


def test_released_config_and_shapes():
    """The released 1.7B Base config: two fields, the rest defaults; 76 tensors."""
    cfg = SpeakerEncoderConfig.from_released(
        {"enc_dim": 2048, "sample_rate": 24000, "model_type": ""}
    )
    assert cfg.enc_channels == (512, 512, 512, 512, 1536) and cfg.enc_res2net_scale == 8
    assert SpeakerEncoderConfig.from_dict(cfg.to_dict()) == cfg
    state = build_on_meta(lambda: SpeakerEncoder(cfg)).state_dict()
    assert len(state) == 76
    assert state["fc.weight"].shape == (2048, 3072, 1)
    assert state["blocks.3.res2net_block.blocks.6.conv.weight"].shape == (64, 64, 3)
    assert state["asp.tdnn.conv.weight"].shape == (128, 4608, 1)
    with pytest.raises(ConfigError, match="unknown config keys"):
        SpeakerEncoderConfig.from_released({"enc_dim": 1024, "enc_lin_neurons": 192})
    with pytest.raises(ConfigError, match="sum of enc_channels"):
        SpeakerEncoderConfig.from_dict({"enc_channels": [32, 32, 32, 32, 64]})


# -- bad input -------------------------------------------------------------------------------
def test_bad_audio_raises_typed_errors(encoder, cases):
    wav = torch.from_numpy(cases["wav_b"])
    short = round(0.5 * MIN_SECONDS * 24000)
    with pytest.raises(EmptyAudioError, match="too short"):
        encoder.embed(wav[:short])
    with pytest.raises(EmptyAudioError, match="too short"):
        encoder.embed_audio(cases["wav_c16k"][: round(0.9 * 16000)], 16000)
    with pytest.raises(EmptyAudioError, match=r"silent .* items \[1\]"):
        encoder.embed(torch.stack([wav, torch.zeros_like(wav)]))
    with pytest.raises(EmptyAudioError, match="silent"):
        encoder.embed_audio(np.full(48000, 1e-5, dtype=np.float32), 24000)
    bad = wav.clone()
    bad[100] = float("nan")
    with pytest.raises(InvalidAudioError, match="NaN"):
        encoder.embed(bad)
    with pytest.raises(InvalidAudioError):
        encoder.embed(wav.reshape(2, 4, -1))
    with pytest.raises(InputError, match="sample_rate"):
        encoder.embed_audio(cases["wav_b"])
    with pytest.raises(InputError, match="mels must be"):
        encoder(torch.zeros(1, 4, 128))
