"""``omnispeech chat`` on tiny random Qwen3-Omni folders: text and audio in, text and speech
out, and one clear line for each bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from omnispeech.cli import main
from omnispeech.testing import tiny_tokenizer
from tests.conftest import redraw
from tests.tiny import tiny_omni_model
from tests.vocoder_ref import redraw_vocoder


def _save(model, path):
    # Replies in the tiny tokenizer's bytes (ids under 256), so that they print as text: the
    # other rows of the Thinker's head score 0, below the best of 256 random scores.
    with torch.no_grad():
        model.thinker.lm_head.weight[256:] = 0.0
    model.save_pretrained(path)
    tiny_tokenizer().save(str(path / "tokenizer.json"))
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    full = tiny_omni_model(audio_output=True)
    redraw(full, std=0.2, seed=8)
    redraw_vocoder(full.code2wav, seed=8)
    thinking = tiny_omni_model(audio_output=False)  # like the released -Thinking: no talker
    redraw(thinking, std=0.2, seed=9)
    out = {"full": _save(full, root / "full"), "thinking": _save(thinking, root / "thinking")}
    # A model without an audio tower: the thinking folder with the tower's tensors removed.
    deaf = _save(thinking, root / "deaf")
    with safe_open(deaf / "model.safetensors", "pt") as handle:
        kept = {k: handle.get_tensor(k) for k in handle.keys() if "audio_tower" not in k}
    save_file(kept, str(deaf / "model.safetensors"), metadata={"format": "pt"})
    out["deaf"] = deaf
    # A talker made for a Thinker of another width.
    wide = _save(full, root / "wide")
    config = json.loads((wide / "config.json").read_text())
    config["talker_config"]["thinker_hidden_size"] = 48
    (wide / "config.json").write_text(json.dumps(config))
    out["wide"] = wide
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "question.wav"
    wav = 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    sf.write(path, wav, 16000)
    return path


def _run(*args):
    return CliRunner().invoke(main, ["chat", *map(str, args)])


def test_text_in_text_and_speech_out(folders, tmp_path):
    args = ["Hello there.", "-m", folders["full"], "--max-new-tokens", 4, "--max-seconds", 0.4]
    out, again = tmp_path / "reply.wav", tmp_path / "again.wav"
    result = _run(*args, "-o", out, "--greedy")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()  # the reply's text
    wav, rate = sf.read(out)
    assert rate == 24000
    assert wav.size == 5 * 1920 - 555  # 0.4 s = 5 frames, the released length rule
    assert np.abs(wav).max() > 1e-2
    result = _run(*args, "-o", again, "--greedy")
    assert result.exit_code == 0
    assert np.array_equal(sf.read(again)[0], wav)
    # The released sampling, seeded: reproducible too.
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    assert _run(*args, "-o", a, "--seed", 4).exit_code == 0
    assert _run(*args, "-o", b, "--seed", 4).exit_code == 0
    assert np.array_equal(sf.read(a)[0], sf.read(b)[0])


def test_audio_in_streams_pcm_to_stdout(folders, clip):
    result = _run("-m", folders["full"], "--audio", clip, "-o", "-", "--max-new-tokens", 3,
                  "--max-seconds", 0.24, "--greedy")  # fmt: skip
    assert result.exit_code == 0, result.output
    pcm = np.frombuffer(result.stdout_bytes, dtype="<i2")
    assert pcm.size == 3 * 1920 - 555


def test_folder_without_a_talker_answers_in_text_and_says_so_once(folders, tmp_path):
    out = tmp_path / "none.wav"
    result = _run("Hi.", "-m", folders["thinking"], "-o", out, "--max-new-tokens", 3)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("no talker") == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "case, args, message",
    [
        ("deaf", ["--audio", "CLIP"], "no audio tower"),
        ("wide", ["Hi.", "-o", "OUT"], "Thinker is 32 wide but the talker takes 48-wide"),
        ("full", [], "nothing to answer"),
        ("full", ["Hi.", "-o", "OUT.mp3"], "write .wav, .flac or .ogg"),
    ],
)
def test_bad_input_is_one_line(folders, clip, tmp_path, case, args, message):
    where = {"CLIP": str(clip), "OUT": str(tmp_path / "reply.wav")}
    where["OUT.mp3"] = str(tmp_path / "reply.mp3")
    args = [where.get(a, a) for a in args]
    result = _run("-m", folders[case], *args, "--max-new-tokens", 2)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_library_refuses_mismatched_widths(folders):
    from omnispeech.bridge import Omni
    from omnispeech.errors import CheckpointError

    with pytest.raises(CheckpointError, match="32 wide but the talker takes 48"):
        Omni.from_pretrained(folders["wide"])
