"""``omnispeech.eval``: codec reconstruction scores and the ``omnispeech eval codec`` command."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from click.testing import CliRunner

from omnispeech.cli import main
from omnispeech.eval import evaluate_codec
from omnispeech.pipelines import Codec
from tests.vocoder_ref import GOLDEN


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
