"""omnispeech.data.voices: new voices from a corpus's training recordings by resampling."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from omnispeech.cli import main
from omnispeech.data import read_manifest
from omnispeech.data.voices import check_factors, perturb_voices, plan_copies
from omnispeech.errors import InputError

RATES = (16000, 24000)


def _tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wav: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.argmax(spectrum) * rate / len(wav))


def _corpus(root: Path, splits=("train", "train", "train", "dev", "test")) -> Path:
    """A corpus of tones: utterance i is a (200 + 50 i) Hz tone of 1 + 0.25 i seconds."""
    records = []
    for i, split in enumerate(splits):
        uid = f"en-{i:06d}"
        paths = {}
        for rate in RATES:
            rel = f"wav{rate}/en/{uid}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(root / rel), _tone(200 + 50 * i, 1 + 0.25 * i, rate), rate)
            paths[str(rate)] = rel
        records.append(
            {
                "id": uid,
                "path": paths["16000"],
                "paths": paths,
                "text": f"sentence {i}",
                "language": "en",
                "speaker": f"voice-{i % 2}",
                "duration": 1 + 0.25 * i,
                "split": split,
            }
        )
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    return manifest


def test_every_training_utterance_gets_one_copy_and_held_out_splits_none(tmp_path):
    _corpus(tmp_path)
    records = read_manifest(tmp_path)
    plan = plan_copies(records, (0.9, 1.1), seed=0, split="train")
    assert [r["id"] for r, _ in plan] == [r["id"] for r in records if r["split"] == "train"]
    for record, copy in plan:
        f = copy["resampled"]
        assert f in (0.9, 1.1)
        assert copy["id"] == f"{record['id']}-s{round(f * 100)}"
        assert copy["speaker"] == f"{record['speaker']}-s{round(f * 100)}"
        assert copy["split"] == "train" and copy["text"] == record["text"]
        assert copy["duration"] == pytest.approx(record["duration"] / f, abs=1e-3)
        assert copy["paths"]["24000"] == f"wav24000/en/{copy['id']}.wav"
        assert copy["path"] == copy["paths"]["16000"]


def test_the_seed_draws_the_factors():
    records = [{"id": f"x{i}", "path": f"x{i}.wav", "split": "train"} for i in range(200)]
    factors = (0.86, 0.93, 1.07, 1.16)
    draw = [c["resampled"] for _, c in plan_copies(records, factors, seed=0, split="train")]
    again = [c["resampled"] for _, c in plan_copies(records, factors, seed=0, split="train")]
    other = [c["resampled"] for _, c in plan_copies(records, factors, seed=1, split="train")]
    assert draw == again and draw != other
    # Every factor is drawn, none far from a quarter of the time.
    assert all(30 < n < 70 for n in Counter(draw).values()) and len(set(draw)) == 4


def test_copies_are_resampled_at_every_rate(tmp_path):
    manifest = _corpus(tmp_path)
    before = manifest.read_text()
    result = perturb_voices(tmp_path, (0.8, 1.25), seed=0)
    assert manifest.read_text() == before  # the corpus's own manifest is kept
    assert result.manifest == tmp_path / "manifest.voices.jsonl"
    assert (result.copies, result.written) == (3, 3)
    assert result.speakers[0] == 2 and result.speakers[1] > 2
    records = read_manifest(result.manifest)
    assert records[:5] == read_manifest(manifest)
    copies = records[5:]
    assert len(copies) == 3
    total = 0.0
    for copy in copies:
        i, f = int(copy["id"][3:9]), copy["resampled"]
        for rate in RATES:
            wav, sr = sf.read(str(tmp_path / copy["paths"][str(rate)]), dtype="float32")
            assert sr == rate
            # f times faster: 1/f of the length, every frequency times f.
            assert len(wav) / rate == pytest.approx((1 + 0.25 * i) / f, abs=2e-3)
            assert _peak_hz(wav, rate) == pytest.approx((200 + 50 * i) * f, rel=0.02)
        total += len(wav) / rate
    assert result.seconds == pytest.approx(total, abs=1e-2)


def test_a_second_run_reuses_the_copies(tmp_path):
    _corpus(tmp_path)
    first = perturb_voices(tmp_path, (0.9, 1.1), seed=0)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*-s*.wav")}
    second = perturb_voices(tmp_path, (0.9, 1.1), seed=0)
    assert second.written == 0 and second.copies == first.copies
    assert second.seconds == pytest.approx(first.seconds, abs=1e-2)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*-s*.wav")} == mtimes
    assert not list(tmp_path.rglob("*.part*"))


def test_records_with_one_path(tmp_path):
    manifest = _corpus(tmp_path)
    records = [{k: v for k, v in r.items() if k != "paths"} for r in read_manifest(manifest)]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = perturb_voices(manifest, (1.1,), out="more.jsonl")
    copies = read_manifest(result.manifest)[5:]
    assert all("paths" not in c and (tmp_path / c["path"]).exists() for c in copies)


@pytest.mark.parametrize(
    ("factors", "message"),
    [((), "no speed factors"), ((1.0,), "other than 1"), ((2.5,), "in (0.5, 2)"),
     ((1.1, 1.101), "same voice")],
)  # fmt: skip
def test_bad_factors_are_refused(factors, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_factors(factors)


def test_bad_corpora_are_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(InputError, match="no manifest"):
        perturb_voices(tmp_path)
    _corpus(tmp_path, splits=("dev", "test"))
    with pytest.raises(InputError, match="no 'train' utterances"):
        perturb_voices(tmp_path)
    with pytest.raises(InputError, match="own manifest"):
        perturb_voices(tmp_path, split="dev", out="manifest.jsonl")
    with pytest.raises(InputError, match="give a file name"):
        perturb_voices(tmp_path, split="dev", out="sub/more.jsonl")
    assert not list(tmp_path.rglob("*-s*.wav"))
    assert not (tmp_path / "manifest.voices.jsonl").exists()


def test_cli_adds_voices_and_says_what_is_wrong_in_one_line(tmp_path):
    _corpus(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(main, ["data", "voices", str(tmp_path), "--factors", "0.9,1.1"])
    assert ok.exit_code == 0, ok.output
    assert "3 copies (3 written now" in ok.output and "train speakers 2 -> " in ok.output
    bad = runner.invoke(main, ["data", "voices", str(tmp_path), "--factors", "1"])
    assert bad.exit_code != 0
    assert bad.output.strip().splitlines()[-1] == (
        "Error: speed factor 1.0: give factors in (0.5, 2) other than 1"
    )
    bad = runner.invoke(main, ["data", "voices", str(tmp_path), "--factors", "fast"])
    assert bad.exit_code != 0 and "give speed factors, e.g. 0.9,1.1" in bad.output
