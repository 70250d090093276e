"""The voice shipped inside the package: found with no name, loaded by the released
checkpoints' code, small, and cloning a voice from the command line with nothing downloaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from omnispeech.bundled import BUNDLED, DEFAULTS, bundled_bytes, bundled_folder, default_model
from omnispeech.cli import main
from omnispeech.errors import InputError
from omnispeech.pipelines import TTS

FOLDER = bundled_folder(DEFAULTS["tts"])
pytestmark = [
    pytest.mark.skipif(
        FOLDER is None, reason="installed without the bundled TTS weights (package data left out)"
    ),
    pytest.mark.skipif(
        shutil.which("espeak-ng") is None, reason="the bundled voice reads espeak-ng phonemes"
    ),
]
CLIP = Path(__file__).resolve().parents[1] / "examples" / "austen.wav"
RATE = 24000


@pytest.fixture(scope="module")
def tts() -> TTS:
    return TTS.from_pretrained()


def test_the_default_is_the_bundled_folder_and_all_models_stay_small():
    assert default_model("tts") == FOLDER and FOLDER.name == BUNDLED[DEFAULTS["tts"]]
    config = json.loads((FOLDER / "config.json").read_text())
    assert config["model_type"] == "qwen3_tts"
    assert (FOLDER / "speech_tokenizer" / "config.json").is_file()
    # Clones are pushed from the training voices' centre (docs/tts-small.md says why).
    assert config["speaker_contrast"] == {"strength": 2.0}
    assert bundled_bytes() < 60_000_000  # every bundled model together, as stored in git


def test_it_clones_the_example_clip_at_a_speaking_pace(tts):
    voice = tts.voice(CLIP)
    text = "Hello, this is my voice."
    wav = tts.synthesize(text, voice, language="en", seed=0)
    assert wav.dtype == np.float32 and np.isfinite(wav).all()
    # About 2 s for six words: the pace the model learnt (0.66 frames per phoneme), not the
    # duration guard's limit (which would be several times longer) and not an early stop.
    assert 0.8 < wav.size / RATE < 4.5
    assert 0.01 < float(np.sqrt(np.mean(wav**2))) < 0.5  # audible, not clipped noise
    # The voice matters: another reference clip gives other speech for the same seed.
    other = tts.voice(np.asarray(sf.read(CLIP)[0][::-1], np.float32), sample_rate=16000)
    assert not np.array_equal(wav, tts.synthesize(text, other, language="en", seed=0))
    # In context (the clip's transcript too), the clip's own frames are not spoken again.
    ref_text = CLIP.with_suffix(".txt").read_text().strip()
    in_context = tts.synthesize(text, tts.voice(CLIP, ref_text=ref_text), language="en", seed=0)
    assert 0.8 < in_context.size / RATE < 4.5


def test_streaming_equals_offline_and_other_languages_clone_from_english(tts):
    voice = tts.voice(CLIP)
    text = "Guten Tag, wie geht es dir?"
    offline = tts.synthesize(text, voice, language="de", seed=4)
    chunks = list(tts.stream(text, voice, language="de", seed=4))
    assert len(chunks) > 1
    np.testing.assert_allclose(np.concatenate(chunks), offline, atol=1e-5)
    assert offline.size / RATE > 1.0
    with pytest.raises(InputError):
        tts.synthesize("   ", voice, language="en")


def test_the_readme_command_runs_without_a_model(tmp_path):
    out = tmp_path / "hello.wav"
    args = ["tts", "Hello, this is my voice.", "--clone", str(CLIP), "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    wav, rate = sf.read(out)
    assert rate == RATE and wav.size > RATE * 0.8
    streamed = tmp_path / "streamed.wav"
    args = ["tts", "-", "--stream", "--clone", str(CLIP), "-o", str(streamed), "--seed", "1"]
    result = CliRunner().invoke(main, args, input="Hello there.\n")
    assert result.exit_code == 0, result.output
    assert sf.read(streamed)[0].size > RATE * 0.5
