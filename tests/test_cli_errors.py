"""What a new user mistypes gets one line on stderr and exit status 1, before any model loads:
seeds beyond 64 bits, output folders that do not exist, a folder or a non-npz file given as a
codes file, empty text, a speed of 0; and a Base model given no voice says what it speaks in."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from omnispeech.cli import main
from omnispeech.codes import save_codes
from tests.tts_ref import tiny_tts
from tests.vocoder_ref import GOLDEN

RATE = 24000


@pytest.fixture(scope="module")
def tts_dir(tmp_path_factory):
    return tiny_tts(tmp_path_factory.mktemp("tts"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A reference clip and a valid codes file for the tiny golden codec."""
    d = tmp_path_factory.mktemp("inputs")
    t = np.arange(2 * RATE) / RATE
    sf.write(d / "ref.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), RATE)
    codes = np.random.default_rng(0).integers(0, 64, (16, 4))
    save_codes(d / "codes.npz", codes, sample_rate=RATE, frame_rate=12.5, codebook_size=64)
    return d


def _one_line(*args: str) -> str:
    """Run the command; assert it failed cleanly with exit 1 and one line; return the line."""
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 1, result.output
    # An exception that escaped the command is a traceback for the user, whatever its text.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_seed_beyond_64_bits(tts_dir, files, tmp_path):
    base = ["tts", "Hello.", "--clone", str(files / "ref.wav"), "-o", str(tmp_path / "o.wav")]
    line = _one_line(*base, "-m", str(tts_dir), "--seed", str(2**64))
    assert "--seed" in line and "2**64 - 1" in line
    assert "--seed" in _one_line(*base, "-m", str(tts_dir), "--seed", "-1")


@pytest.mark.parametrize(
    "command",
    [
        ["codec", "encode", "{ref}", "-o", "{out}.npz"],
        ["codec", "decode", "{codes}", "-o", "{out}.wav"],
        ["vocode", "{codes}", "-o", "{out}.wav"],
    ],
)
def test_output_folder_that_does_not_exist(files, tmp_path, command):
    out = tmp_path / "nope" / "o"
    fill = {"ref": files / "ref.wav", "codes": files / "codes.npz", "out": out}
    args = [a.format(**fill) for a in command]
    line = _one_line(*args, "-m", str(GOLDEN))
    assert "does not exist" in line and str(tmp_path / "nope") in line
    assert not (tmp_path / "nope").exists()


def test_save_voice_folder_that_does_not_exist(tts_dir, files, tmp_path):
    args = ["tts", "Hello.", "--clone", str(files / "ref.wav"), "-o", str(tmp_path / "o.wav")]
    missing = tmp_path / "nope" / "v.voice"
    line = _one_line(*args, "-m", str(tts_dir), "--save-voice", str(missing))
    assert "--save-voice" in line and "does not exist" in line
    assert not (tmp_path / "o.wav").exists()  # refused before any speech was made


def test_a_folder_given_as_the_codes_file(tmp_path):
    line = _one_line("vocode", str(tmp_path), "-o", str(tmp_path / "o.wav"), "-m", str(GOLDEN))
    assert "is a folder" in line and "no such file" not in line


def test_a_codes_file_that_is_not_an_npz_never_mentions_pickles(tmp_path):
    bad = tmp_path / "codes.npz"
    bad.write_bytes(b"these bytes are not a zip archive")
    line = _one_line("vocode", str(bad), "-o", str(tmp_path / "o.wav"), "-m", str(GOLDEN))
    assert "not a codes file" in line
    assert "pickle" not in line and "unsafe" not in line
    objects = tmp_path / "objects.npz"
    np.savez(objects, codes=np.array([[1, "a"]], dtype=object))
    line = _one_line("vocode", str(objects), "-o", str(tmp_path / "o.wav"), "-m", str(GOLDEN))
    assert "object" in line and "unsafe" not in line and "allow_pickle" not in line


def test_empty_text_is_one_line_and_exit_1(tts_dir, tmp_path):
    line = _one_line("tts", "   ", "-o", str(tmp_path / "o.wav"), "-m", str(tts_dir))
    assert "empty" in line


@pytest.mark.parametrize("speed", ["0", "-1", "nan"])
def test_speed_is_checked_before_the_model_loads(tmp_path, speed):
    # The model folder does not exist: an error about it would mean it was loaded first.
    args = ["tts", "Hi.", "-o", str(tmp_path / "o.wav"), "-m", str(tmp_path / "no-model")]
    line = _one_line(*args, "--speed", speed)
    assert "--speed" in line and "no-model" not in line


def test_output_and_seed_are_checked_before_the_model_loads(files, tmp_path):
    no_model = str(tmp_path / "no-model")
    ref = str(files / "ref.wav")
    line = _one_line(
        "tts", "Hi.", "--clone", ref, "-o", str(tmp_path / "x" / "o.wav"), "-m", no_model
    )
    assert "does not exist" in line and "no-model" not in line
    line = _one_line("tts", "Hi.", "-o", str(tmp_path / "o.wav"), "-m", no_model, "--seed", "-5")
    assert "--seed" in line
    line = _one_line(
        "tts",
        "Hi.",
        "--clone",
        str(tmp_path / "gone.wav"),
        "-o",
        str(tmp_path / "o.wav"),
        "-m",
        no_model,
    )
    assert "gone.wav" in line and "no-model" not in line
    args = ["codec", "encode", ref, "-o", str(tmp_path / "x" / "c.npz"), "-m", no_model]
    assert "does not exist" in _one_line(*args)


def test_a_base_model_without_a_voice_says_what_it_speaks_in(tts_dir, tmp_path, monkeypatch):
    from omnispeech.pipelines import TTS

    # What matters is the line before the speech; the speech itself is tested in test_tts.py
    # (random weights never end an utterance, so real generation would run to the guard).
    given = []

    def stream(self, text, voice=None, **options):
        given.append(voice)
        yield np.zeros(RATE // 10, dtype=np.float32)

    monkeypatch.setattr(TTS, "stream", stream)
    out = tmp_path / "o.wav"
    result = CliRunner().invoke(main, ["tts", "Hi.", "-o", str(out), "-m", str(tts_dir)])
    assert result.exit_code == 0, result.output
    assert given == [None]
    notes = [x for x in result.stderr.splitlines() if x.startswith("Note:")]
    assert len(notes) == 1 and "--clone" in notes[0] and "unconditioned voice" in notes[0]
    assert out.is_file()


@pytest.mark.parametrize("option", ["--json", "--report"])
def test_eval_report_folder_is_checked_before_the_evaluation(files, tmp_path, option):
    # The model folder does not exist either: the report path is refused first.
    args = ["eval", "codec", str(files / "ref.wav"), "-m", str(tmp_path / "no-model")]
    line = _one_line(*args, option, str(tmp_path / "nope" / "score.json"))
    assert option in line and "does not exist" in line
