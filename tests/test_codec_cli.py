"""`Codec` (encoder + Code2Wav from one tokenizer folder) and `omnispeech codec encode|decode`."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
from click.testing import CliRunner

from omnispeech.cli import main
from omnispeech.codes import load_codes
from omnispeech.pipelines import Codec
from tests.vocoder_ref import GOLDEN


def _voice(tmp_path, rate=16000, seconds=1.3):
    t = np.arange(int(rate * seconds)) / rate
    wav = 0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)
    path = tmp_path / "voice.wav"
    sf.write(path, np.stack([wav, 0.5 * wav], axis=1), rate)  # stereo at 16 kHz
    return path


def test_codec_round_trip_through_the_cli(tmp_path):
    codec = Codec.from_pretrained(GOLDEN)
    audio = _voice(tmp_path)
    codes_path, out = tmp_path / "voice.npz", tmp_path / "copy.wav"
    runner = CliRunner()
    args = ["--model", str(GOLDEN)]
    result = runner.invoke(main, ["codec", "encode", str(audio), "-o", str(codes_path), *args])
    assert result.exit_code == 0, result.output
    data = load_codes(codes_path)
    frames = -(-int(1.3 * 24000) // 1920)
    assert data.codes.shape == (1, 16, frames)
    assert (data.sample_rate, data.frame_rate, data.codebook_size) == (24000, 12.5, 64)
    assert data.model == GOLDEN.name
    assert torch.equal(torch.from_numpy(data.codes[0]), codec.encode_file(audio))
    result = runner.invoke(main, ["codec", "decode", str(codes_path), "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    wav, rate = sf.read(out, dtype="float32")
    expected = codec.decode(torch.from_numpy(data.codes)).wav[0, 0].numpy()
    assert rate == 24000 and wav.shape == (1920 * frames,)
    assert np.abs(wav - expected).max() < 1.5 / 32768


def test_codec_cli_errors(tmp_path):
    runner = CliRunner()
    args = ["--model", str(GOLDEN)]
    missing = runner.invoke(
        main, ["codec", "encode", str(tmp_path / "no.wav"), "-o", str(tmp_path / "c.npz"), *args]
    )
    assert missing.exit_code == 1 and "Error:" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    wrong = runner.invoke(
        main, ["codec", "encode", str(_voice(tmp_path)), "-o", str(tmp_path / "c.wav"), *args]
    )
    assert wrong.exit_code == 1 and "must end in .npz" in wrong.output
    assert not (tmp_path / "c.npz").exists()
