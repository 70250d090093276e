"""The recogniser shipped inside the package: found with no name, loaded by the released
checkpoints' code, small, and working from the command line with nothing downloaded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from omnispeech.bundled import BUNDLED, DEFAULTS, bundled_folder, default_model
from omnispeech.pipelines import ASR
from omnispeech.pipelines.languages import LANGUAGE_NAMES

FOLDER = bundled_folder(DEFAULTS["asr"])
pytestmark = pytest.mark.skipif(
    FOLDER is None, reason="installed without the bundled ASR weights (package data left out)"
)


@pytest.fixture(scope="module")
def asr() -> ASR:
    return ASR.from_pretrained()


def test_the_default_is_the_bundled_folder_and_it_stays_small():
    assert default_model("asr") == FOLDER and FOLDER.name == BUNDLED[DEFAULTS["asr"]]
    weights = sum(p.stat().st_size for p in FOLDER.glob("*.safetensors"))
    assert 1_000_000 < weights < 25_000_000  # bfloat16, well inside the 60 MB for all models
    config = json.loads((FOLDER / "config.json").read_text())
    assert config["model_type"] == "qwen3_asr" and "thinker_config" in config


def test_it_loads_as_a_released_checkpoint_with_a_ctc_head(asr):
    assert asr.ctc_head is not None
    # Every corpus language is offered for forcing and detection, by its prompt name.
    assert len(asr.config.languages) >= 100
    assert set(asr.config.languages) <= set(LANGUAGE_NAMES.values())


def test_its_output_depends_on_the_sound(asr):
    rng = np.random.default_rng(0)
    t = np.arange(32_000) / 16_000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    noise = (0.1 * rng.standard_normal(32_000)).astype(np.float32)
    a = asr.transcribe(tone, language="en").token_ids
    b = asr.transcribe(noise, language="en").token_ids
    assert a != b


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_it_hears_which_sentence_was_said(asr, tmp_path):
    # An early model gets many characters wrong (docs/asr-small.md), but what it writes must
    # come from what was said: each transcript is nearer its own sentence than the others.
    from omnispeech.eval.text import error_rates

    sentences = {
        "en": ["Please open the window.", "The weather is nice today."],
        "de": ["Der Hund schläft im Garten.", "Wir fahren morgen nach Berlin."],
    }
    for language, texts in sentences.items():
        for voice in ("", "+m3"):
            hyps = []
            for i, text in enumerate(texts):
                wav = tmp_path / f"{language}{voice}{i}.wav"
                argv = ["espeak-ng", "-v", language + voice, "-w", str(wav), text]
                subprocess.run(argv, check=True)
                hyps.append(asr.transcribe(str(wav), language=language).text)
            for i, hyp in enumerate(hyps):
                own = error_rates([texts[i]], [hyp], language).cer
                other = error_rates([texts[1 - i]], [hyp], language).cer
                assert own < other, (language, voice, hyp)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_command_line_transcribes_and_times_words_without_a_model(tmp_path):
    wav = tmp_path / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "Please open the window."], check=True)
    cmd = [sys.executable, "-m", "omnispeech", "asr", str(wav), "--language", "en"]
    done = subprocess.run(
        [*cmd, "--format", "json", "--timestamps"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[0])
    assert result["text"].strip()
    import soundfile as sf

    seconds = sf.info(str(wav)).duration
    for word in result["words"]:
        assert 0 <= word["start"] <= word["end"] <= seconds + 0.08
