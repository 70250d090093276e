"""The codec encoder equals the qwen-tts 12 Hz tokenizer's encoder (golden files), and is causal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnispeech.codec import CodecEncoder
from omnispeech.errors import CheckpointError, EmptyAudioError, InputError
from tests.conftest import write_folder
from tests.vocoder_ref import GOLDEN


@pytest.fixture(scope="module")
def encoder():
    return CodecEncoder.from_pretrained(GOLDEN)


@pytest.fixture(scope="module")
def cases():
    with np.load(GOLDEN / "encoder_cases.npz") as data:
        return {k: data[k] for k in data.files}


def test_codes_equal_qwen_tts(encoder, cases):
    """Each clip encoded at its own length (the golden `codes_single`)."""
    audio = torch.from_numpy(cases["audio"])
    codes, frames = encoder.encode(audio, torch.from_numpy(cases["audio_lengths"]))
    assert frames.tolist() == cases["code_lengths_single"].tolist() == [31, 38]
    for i, n in enumerate(frames.tolist()):
        expected = cases["codes_single"][i, :n].T  # qwen-tts returns time-major [T, 16]
        assert np.array_equal(codes[i, :, :n].numpy(), expected)
        assert (codes[i, :, n:] == -1).all()
    assert len(np.unique(expected)) > 10  # the codes vary: a real comparison


def test_reference_batch_differs_only_where_padding_leaks(encoder, cases):
    """qwen-tts encodes a padded batch without a mask: only a short clip's last, partial frame
    sees the padding. Everything else equals our per-clip encoding."""
    audio = torch.from_numpy(cases["audio"])
    codes, frames = encoder.encode(audio, torch.from_numpy(cases["audio_lengths"]))
    for i, n in enumerate(frames.tolist()):
        batch = cases["codes"][i, :n].T
        same = codes[i, :, :n].numpy() == batch
        assert same[:, : n - 1].all()


def test_prefix_of_whole_frames_gives_prefix_of_codes(encoder, cases):
    """No look-ahead: the codes of the first k frames never depend on later audio."""
    wav = torch.from_numpy(cases["audio"][1:2])
    full, _ = encoder.encode(wav)
    for k in (1, 7, 20):
        head, _ = encoder.encode(wav[..., : 1920 * k])
        assert torch.equal(head, full[..., :k])


def test_save_pretrained_round_trip(encoder, cases, tmp_path):
    encoder.save_pretrained(tmp_path)
    wav = torch.from_numpy(cases["audio"][1:2, :, :20000])
    assert torch.equal(
        CodecEncoder.from_pretrained(tmp_path).encode(wav)[0], encoder.encode(wav)[0]
    )


def test_bad_input(encoder, tmp_path):
    with pytest.raises(InputError, match="mono"):
        encoder.encode(torch.zeros(1, 2, 4000))
    with pytest.raises(InputError, match="NaN or Inf"):
        encoder.encode(torch.full((1, 1, 4000), float("nan")))
    with pytest.raises(EmptyAudioError):
        encoder.encode(torch.zeros(2, 1, 4000), torch.tensor([4000, 0]))
    with pytest.raises(InputError, match="lengths must be"):
        encoder.encode(torch.zeros(2, 1, 4000), torch.tensor([4001, 1]))
    asr = write_folder(tmp_path / "asr", {"model_type": "qwen3_asr"}, {"x": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="no codec encoder"):
        CodecEncoder.from_pretrained(asr)
