"""`Codec` (encoder + Code2Wav from one tokenizer folder) and `omnispeech codec encode|decode`:
long files streamed block by block, and bad input (unusable files: one error line; silence and
clipping: encoded with one warning line)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from click.testing import CliRunner

from omnispeech.audio import load_audio
from omnispeech.cli import main
from omnispeech.codes import load_codes, save_codes
from omnispeech.errors import AudioWarning
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


# -- long files: read block by block and streamed -------------------------------------------


@pytest.fixture(scope="module")
def codec():
    return Codec.from_pretrained(GOLDEN)


def _write(path, wav, rate, subtype="PCM_16"):
    sf.write(path, wav, rate, subtype=subtype)
    return path


@pytest.mark.parametrize("rate", [24000, 44100])
def test_encode_file_in_blocks_equals_whole_file(codec, tmp_path, rate):
    rng = np.random.default_rng(rate)
    wav = (0.2 * rng.standard_normal(int(3.3 * rate))).astype(np.float32)
    path = _write(tmp_path / "long.wav", wav, rate, "FLOAT")
    seconds = []
    codes = codec.encode_file(path, block_seconds=0.37, progress=seconds.append)
    whole = codec.encode(torch.from_numpy(load_audio(path, 24000)))[0][0]
    assert len(seconds) > 8  # really read in blocks
    assert sum(seconds) == pytest.approx(3.3, abs=1e-3)
    assert codes.shape == (16, -(-int(3.3 * 24000) // 1920))
    assert torch.equal(codes, whole)


def test_wrong_rate_is_resampled_and_stereo_downmixed(codec, tmp_path):
    rng = np.random.default_rng(0)
    stereo = (0.2 * rng.standard_normal((16000, 2))).astype(np.float32)
    path = _write(tmp_path / "stereo16k.wav", stereo, 16000, "FLOAT")
    mono24k = soxr.resample(stereo.mean(axis=1, dtype=np.float32), 16000, 24000, quality="HQ")
    expected = codec.encode(torch.from_numpy(np.asarray(mono24k, dtype=np.float32)))[0][0]
    assert expected.shape == (16, 13)
    assert torch.equal(codec.encode_file(path), expected)


# -- bad input --------------------------------------------------------------------------------


def _encode(tmp_path, audio):
    out = tmp_path / f"{audio.stem}.npz"
    args = ["codec", "encode", str(audio), "-o", str(out), "--model", str(GOLDEN)]
    return CliRunner().invoke(main, args), out


def _one_error(result, *words):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error:"), lines
    assert all(w in lines[0] for w in words), lines


def test_unusable_files_give_one_error_line(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(200)))
    empty = _write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 24000)
    nan = np.full(4000, 0.1, dtype=np.float32)
    nan[1234] = np.nan
    nan_path = _write(tmp_path / "nan.wav", nan, 24000, "FLOAT")
    inf_path = _write(tmp_path / "inf.wav", np.full(4000, np.inf, dtype=np.float32), 24000, "FLOAT")
    for path, words in [
        (tmp_path / "missing.wav", ["no such file"]),
        (tmp_path, ["directory"]),
        (corrupt, ["not a readable audio file"]),
        (empty, ["no samples"]),
        (nan_path, ["NaN or Inf"]),
        (inf_path, ["NaN or Inf"]),
    ]:
        result, out = _encode(tmp_path, path)
        _one_error(result, *words)
        assert not out.exists()


def _warnings(result):
    return [line for line in result.output.splitlines() if line.startswith("Warning:")]


def test_silence_is_encoded_with_a_warning(codec, tmp_path):
    path = _write(tmp_path / "silence.wav", np.zeros(5000, dtype=np.float32), 24000)
    result, out = _encode(tmp_path, path)
    assert result.exit_code == 0, result.output
    assert len(_warnings(result)) == 1 and "digital silence" in _warnings(result)[0]
    assert np.array_equal(load_codes(out).codes[0], codec.encode(torch.zeros(5000))[0][0])


def test_clipped_audio_is_encoded_with_a_warning(codec, tmp_path):
    t = np.arange(24000) / 24000
    loud = np.clip(1.5 * np.sin(2 * np.pi * 110 * t), -1, 1).astype(np.float32)
    result, out = _encode(tmp_path, _write(tmp_path / "clipped.wav", loud, 24000))
    assert result.exit_code == 0, result.output
    assert len(_warnings(result)) == 1 and "clipped" in _warnings(result)[0]
    assert load_codes(out).codes.shape == (1, 16, 13)
    quiet = _write(tmp_path / "quiet.wav", 0.5 * loud, 24000)
    assert _warnings(_encode(tmp_path, quiet)[0]) == []


def test_float_samples_beyond_full_scale_are_clipped(codec, tmp_path):
    rng = np.random.default_rng(1)
    wav = (0.3 * rng.standard_normal(6000)).astype(np.float32)
    wav[100:103] = [1.7, -2.5, 1.2]
    path = _write(tmp_path / "hot.wav", wav, 24000, "FLOAT")
    result, out = _encode(tmp_path, path)
    assert result.exit_code == 0, result.output
    (warning,) = _warnings(result)
    assert "beyond full scale" in warning and "clipped to +-1" in warning
    expected = codec.encode(torch.from_numpy(np.clip(wav, -1, 1)))[0][0]
    assert np.array_equal(load_codes(out).codes[0], expected.numpy())
    with pytest.warns(AudioWarning, match="peak 2.5"):
        assert torch.equal(codec.encode_file(path), expected)


def test_corrupt_codes_files_give_one_error_line(tmp_path):
    codes = tmp_path / "good.npz"
    save_codes(codes, np.zeros((16, 5), dtype=np.int64))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(codes.read_bytes()[:-40])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip archive")
    no_codes = tmp_path / "no_codes.npz"
    np.savez(no_codes, lengths=np.array([5]))
    for path, words in [
        (truncated, ["not a codes file"]),
        (garbage, ["not a codes file"]),
        (no_codes, ["no 'codes' array"]),
        (tmp_path / "missing.npz", ["no such file"]),
    ]:
        args = ["codec", "decode", str(path), "-o", str(tmp_path / "o.wav"), "-m", str(GOLDEN)]
        _one_error(CliRunner().invoke(main, args), *words)
    assert not (tmp_path / "o.wav").exists()
