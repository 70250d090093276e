"""``omnispeech asr`` end to end on a tiny model, and its one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from omnispeech.cli import main
from omnispeech.pipelines import ASR


@pytest.fixture(scope="module")
def model_dir(tiny_asr_dir):
    return tiny_asr_dir


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(24000)).astype(np.float32)
    sf.write(d / "mono16k.wav", speech, 16000)
    sf.write(d / "mono8k.wav", speech[::2], 8000)
    sf.write(d / "stereo.flac", np.stack([speech, 0.5 * speech], axis=1), 16000)
    sf.write(d / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    sf.write(d / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    bad = speech.copy()
    bad[100] = np.nan
    sf.write(d / "nan.wav", bad, 16000, subtype="FLOAT")
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 50)
    return d


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def _one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [x for x in result.output.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    return errors[0]


def test_help_teaches_usage():
    result = _run("asr", "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output and "--language" in result.output


def test_transcribes_like_the_library(model_dir, wavs):
    result = _run("asr", str(wavs / "mono16k.wav"), "--model", str(model_dir), "-l", "en")
    assert result.exit_code == 0, result.output
    expected = ASR.from_pretrained(model_dir).transcribe(wavs / "mono16k.wav", language="en")
    assert result.output.strip() == expected.text.strip()


def test_json_format_resampling_and_downmix(model_dir, wavs):
    files = [str(wavs / n) for n in ("mono8k.wav", "stereo.flac")]
    result = _run("asr", *files, "--model", str(model_dir), "--format", "json", "-l", "English")
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in result.output.splitlines()]
    assert [r["path"] for r in records] == files
    assert all(r["language"] == "English" and abs(r["seconds"] - 1.5) < 1e-3 for r in records)


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing.wav", "no such file"),
        ("corrupt.wav", "not a readable audio file"),
        ("empty.wav", "no samples"),
        ("silent.wav", "silent"),
        ("nan.wav", "NaN"),
    ],
)
def test_bad_audio_is_one_clear_line(model_dir, wavs, name, message):
    line = _one_line_error(_run("asr", str(wavs / name), "--model", str(model_dir)))
    assert message in line and name in line


def test_one_bad_file_does_not_stop_the_others(model_dir, wavs):
    result = _run("asr", str(wavs / "missing.wav"), str(wavs / "mono16k.wav"), "-m", str(model_dir))
    assert result.exit_code == 1
    assert "mono16k.wav\t" in result.output


def test_wrong_model_folders(tmp_path, wavs, model_dir):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_tts_tokenizer_12hz"}))
    sf.write(tmp_path / "x.wav", np.zeros(10), 16000)  # not safetensors: still a clear message
    line = _one_line_error(_run("asr", str(wavs / "mono16k.wav"), "--model", str(tmp_path)))
    assert "safetensors" in line or "Qwen3-ASR" in line
    line = _one_line_error(_run("asr", str(wavs / "mono16k.wav"), "--model", str(tmp_path / "no")))
    assert "no such checkpoint folder" in line
    line = _one_line_error(_run("asr", str(wavs / "mono16k.wav"), "-m", str(model_dir), "-l", "xx"))
    assert "unsupported language 'xx'" in line
    # A released model has no CTC head to weigh.
    line = _one_line_error(_run("asr", str(wavs / "mono16k.wav"), "-m", str(model_dir),
                                "--ctc-weight", "0.5"))  # fmt: skip
    assert "no CTC head" in line
