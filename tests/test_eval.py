"""``omnispeech eval codec | asr | tts``: the commands, their reports and their one-line errors
(the metrics themselves are tested in ``test_eval_metrics.py``)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from omnispeech.cli import main
from omnispeech.eval import evaluate_codec, signal_metrics_available
from omnispeech.pipelines import Codec
from tests.vocoder_ref import GOLDEN

# Error rates come from the eval extra; `pip install -e '.[test,eval]'` runs these tests.
needs_jiwer = pytest.mark.skipif(
    importlib.util.find_spec("jiwer") is None,
    reason="needs the eval extra: pip install -e '.[test,eval]'",
)


def _speechlike(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)  # syllables with pauses
    return (0.4 * envelope * np.sin(2 * np.pi * 180 * t * (1 + 0.1 * t))).astype(np.float32)


def test_scores_and_control(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _speechlike(1.5, 16000), 16000)
    score = evaluate_codec(Codec.from_pretrained(GOLDEN), [path], max_seconds=1.0)
    assert score.seconds == 1.0
    assert list(score.per_file) == [str(path)] and score.mean == score.per_file[str(path)]
    # The tiny random codec reconstructs nothing well, but its codes do change the output.
    assert 0 < score.mean and 0 < score.shuffled and score.shuffled != score.mean
    if signal_metrics_available():
        # Garbage out of a random codec: far from a copy, but a measurement.
        assert score.pesq_wb is not None and 1.0 <= score.pesq_wb < 2.5
        assert score.stoi is not None and score.stoi < 0.9
        assert list(score.per_file_pesq_wb) == [str(path)]


def test_cli_prints_json_and_refuses_empty_input(tmp_path):
    sf.write(tmp_path / "a.wav", _speechlike(0.5, 24000), 24000)
    sf.write(tmp_path / "b.flac", _speechlike(0.7, 24000), 24000)
    result = CliRunner().invoke(
        main, ["eval", "codec", str(tmp_path), "-m", str(GOLDEN), "--per-file"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["files"] == 2 and len(report["per_file"]) == 2
    assert report["mel_distance"] > 0 and report["mel_distance_shuffled_codes"] > 0
    (tmp_path / "empty").mkdir()
    empty = CliRunner().invoke(main, ["eval", "codec", str(tmp_path / "empty"), "-m", str(GOLDEN)])
    assert empty.exit_code != 0 and "no audio files" in empty.output


def test_codec_cli_writes_json_and_markdown(tmp_path):
    sf.write(tmp_path / "a.wav", _speechlike(1.0, 24000), 24000)
    out_json, out_md = tmp_path / "codec.json", tmp_path / "codec.md"
    result = CliRunner().invoke(
        main,
        ["eval", "codec", str(tmp_path / "a.wav"), "-m", str(GOLDEN)]
        + ["--json", str(out_json), "--report", str(out_md)],
    )
    assert result.exit_code == 0, result.output
    printed, saved = json.loads(result.output), json.loads(out_json.read_text())
    assert saved["task"] == "codec" and saved["mel_distance"] == printed["mel_distance"]
    assert "pesq_wb" in printed and "stoi" in printed
    assert str(tmp_path / "a.wav") in saved["per_file"]
    assert "| files | seconds | mel distance |" in out_md.read_text()


def _corpus(root, lines):
    (root / "clips").mkdir(parents=True, exist_ok=True)
    for line in lines:
        if "path" in line:
            sf.write(root / line["path"], _speechlike(0.6, 16000), 16000)
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    return manifest


CORPUS = [
    {"path": "clips/e1.wav", "text": "hello world", "language": "en", "split": "test"},
    {"path": "clips/z1.wav", "text": "你好世界", "language": "zh", "split": "test"},
    {"path": "clips/d1.wav", "text": "guten tag", "language": "de", "split": "dev"},
]


@needs_jiwer
def test_asr_cli_prints_a_table_per_language(tmp_path, tiny_asr_dir):
    manifest = _corpus(tmp_path, CORPUS)
    out_json, out_md = tmp_path / "asr.json", tmp_path / "asr.md"
    result = CliRunner().invoke(
        main,
        ["eval", "asr", str(manifest), "-m", str(tiny_asr_dir)]
        + ["--json", str(out_json), "--report", str(out_md)],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    # The tiny random model writes garbage, but every language gets its row and metric.
    assert summary["split"] == "test" and summary["overall"]["utterances"] == 2
    assert summary["per_language"]["en"]["metric"] == "wer"
    assert summary["per_language"]["zh"]["metric"] == "cer"
    assert "utterances" not in summary  # printed summary only; the file has them all
    saved = json.loads(out_json.read_text())
    assert [u["language"] for u in saved["utterances"]] == ["en", "zh"]
    report = out_md.read_text()
    assert "| language | utterances | CER | WER | primary |" in report
    assert "| en | 1 |" in report and "| zh | 1 |" in report and "| all | 2 |" in report

    dev = CliRunner().invoke(
        main,
        ["eval", "asr", str(manifest), "-m", str(tiny_asr_dir), "--split", "all"]
        + ["--languages", "de,zh", "--limit", "1"],
    )
    assert dev.exit_code == 0, dev.output
    assert sorted(json.loads(dev.output)["per_language"]) == ["de", "zh"]
    assert json.loads(dev.output)["quantized"] is None

    int8 = CliRunner().invoke(
        main, ["eval", "asr", str(manifest), "-m", str(tiny_asr_dir), "--int8"]
    )
    assert int8.exit_code == 0, int8.output
    scored = json.loads(int8.output)
    assert scored["quantized"] == "int8" and scored["overall"]["utterances"] == 2


def _one_line_error(args, *needles):
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_asr_cli_refuses_bad_manifests_in_one_line(tmp_path):
    manifest = _corpus(tmp_path, CORPUS)
    no_model = str(tmp_path / "no_model")  # the manifest is checked before any model loads
    _one_line_error(["eval", "asr", str(tmp_path / "none.jsonl"), "-m", no_model], "not found")
    _one_line_error(
        ["eval", "asr", str(manifest), "-m", no_model, "--split", "eval"],
        "no utterance in split 'eval'",
        "'dev', 'test'",
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "clips/e1.wav", "text": "hi"}\n{"text": "no path"}\n')
    _one_line_error(["eval", "asr", str(bad), "-m", no_model, "--split", "all"], ":2:", "'path'")
    bad.write_text('{"path": "clips/e1.wav"}\n')
    _one_line_error(["eval", "asr", str(bad), "-m", no_model, "--split", "all"], ":1:", "'text'")
    _one_line_error(["eval", "asr", str(manifest), "-m", no_model], "no_model")


@needs_jiwer
def test_tts_cli_scores_a_folder(tmp_path, tiny_asr_dir):
    manifest = _corpus(tmp_path / "corpus", CORPUS)
    synth = tmp_path / "synth"
    synth.mkdir()
    sf.write(synth / "e1.wav", _speechlike(0.9, 24000), 24000)
    sf.write(synth / "z1.flac", _speechlike(0.3, 16000), 16000)
    out_md = tmp_path / "tts.md"
    result = CliRunner().invoke(
        main,
        ["eval", "tts", str(synth), str(manifest), "--asr-model", str(tiny_asr_dir)]
        + ["--no-similarity", "--report", str(out_md)],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["task"] == "tts" and summary["overall"]["utterances"] == 2
    assert summary["per_language"]["en"]["duration_ratio"] == pytest.approx(1.5, abs=1e-3)
    assert summary["per_language"]["zh"]["duration_ratio"] == pytest.approx(0.5, abs=1e-3)
    assert summary["overall"]["speaker_similarity"] is None
    assert summary["overall"]["cer"] is not None  # the tiny model's garbage, scored
    assert "| zh | 1 |" in out_md.read_text()
    (synth / "z1.flac").unlink()
    _one_line_error(
        ["eval", "tts", str(synth), str(manifest), "--no-similarity"],
        "1 of 2 utterances have no synthesised audio",
    )
