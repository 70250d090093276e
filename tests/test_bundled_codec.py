"""The codec shipped inside the package: found with no name, loaded by the released
tokenizer's code, small, carrying the speech through its codes, and used by `omnispeech codec`
and `omnispeech vocode` when no model is named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from omnispeech import bundled
from omnispeech.audio import load_audio
from omnispeech.audio.spectral import mel_distance
from omnispeech.bundled import BUNDLED, DEFAULTS, bundled_bytes, bundled_folder, default_model
from omnispeech.cli import main
from omnispeech.codes import load_codes, save_codes
from omnispeech.pipelines import Codec

FOLDER = bundled_folder(DEFAULTS["codec"])
CLIP = Path(__file__).resolve().parents[1] / "examples" / "austen.wav"
RATE = 24000
installed = pytest.mark.skipif(
    FOLDER is None, reason="installed without the bundled codec weights (package data left out)"
)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec.from_pretrained()


@installed
def test_the_default_is_the_bundled_folder_and_all_models_stay_small():
    assert default_model("codec") == FOLDER
    # The bundled voice's own speech tokenizer, shipped once: the codes it learnt are this
    # codec's.
    assert FOLDER == bundled_folder(DEFAULTS["tts"]) / "speech_tokenizer"
    assert FOLDER.as_posix().endswith(BUNDLED[DEFAULTS["codec"]])
    config = json.loads((FOLDER / "config.json").read_text())
    assert config["model_type"] == "qwen3_tts_tokenizer_12hz"  # the released tokenizer's layout
    weights = sum(p.stat().st_size for p in FOLDER.glob("*.safetensors"))
    assert 1_000_000 < weights < 12_000_000  # bfloat16
    assert bundled_bytes() < 60_000_000  # every bundled model together, as stored in git


@installed
def test_real_speech_survives_its_codes(codec):
    """A recording no bundled model was trained on (a LibriVox reader) comes back closer to
    itself than the same codes decoded in shuffled order: the codes carry the speech."""
    wav = torch.from_numpy(load_audio(CLIP, RATE))
    codes, frames = codec.encode(wav[None, None])
    assert codes.shape[:2] == (1, 8) and int(frames[0]) == codes.shape[-1]
    assert abs(codes.shape[-1] - 25 * wav.shape[0] / RATE) <= 1  # 25 frames per second
    assert int(codes.min()) >= 0 and int(codes.max()) < 1024
    out = codec.decode(codes, frames).wav[0, 0, : wav.shape[0]]
    assert torch.isfinite(out).all() and out.shape == wav.shape
    shuffled = codes[
        ..., torch.randperm(codes.shape[-1], generator=torch.Generator().manual_seed(0))
    ]
    control = codec.decode(shuffled, frames).wav[0, 0, : wav.shape[0]]
    assert mel_distance(out, wav, RATE) < 0.6 * mel_distance(control, wav, RATE)


@installed
def test_the_commands_use_it_when_no_model_is_named(codec, tmp_path):
    codes_file, copy, vocoded = tmp_path / "a.npz", tmp_path / "a.wav", tmp_path / "b.wav"
    runner = CliRunner()
    result = runner.invoke(main, ["codec", "encode", str(CLIP), "-o", str(codes_file)])
    assert result.exit_code == 0, result.output
    data = load_codes(codes_file)
    assert data.codes.shape[-2] == 8 and data.frame_rate == 25
    assert data.model == DEFAULTS["codec"]  # the file says which codec made it
    for command, out in (("codec decode", copy), ("vocode", vocoded)):
        result = runner.invoke(main, [*command.split(), str(codes_file), "-o", str(out)])
        assert result.exit_code == 0, result.output
    a, rate = sf.read(copy, dtype="float32")
    b, _ = sf.read(vocoded, dtype="float32")
    assert rate == RATE and a.size == data.codes.shape[-1] * RATE // 25
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_without_a_bundled_codec_the_commands_say_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.delenv("OMNISPEECH_CODEC_MODEL", raising=False)
    monkeypatch.delenv("OMNISPEECH_VOCODER_MODEL", raising=False)
    monkeypatch.setattr(bundled, "BUNDLED", {})
    codes = tmp_path / "codes.npz"  # a valid file: the codes are read before the model loads
    save_codes(codes, np.zeros((8, 5), np.int64), sample_rate=RATE, frame_rate=25)
    out = tmp_path / "out"
    out.mkdir()
    runner = CliRunner()
    for args in (
        ["codec", "encode", str(CLIP), "-o", str(out / "a.npz")],
        ["codec", "decode", str(codes), "-o", str(out / "a.wav")],
        ["vocode", str(codes), "-o", str(out / "b.wav")],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 1, result.output
        lines = [x for x in result.output.splitlines() if x.strip()]
        assert len(lines) == 1 and "--model" in lines[0] and "codec" in lines[0], lines
    assert not list(out.iterdir())  # nothing written
