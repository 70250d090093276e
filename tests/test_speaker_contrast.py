"""Speaker contrast: the push from the training voices' centre, its files beside the released
layout, the pipeline applying it to every clone (and to none without it), and its options."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from omnispeech.cli import main
from omnispeech.errors import CheckpointError, InputError
from omnispeech.pipelines import TTS
from omnispeech.talker import SpeakerContrast
from omnispeech.talker.contrast import FILE
from tests.tts_ref import short_guard, tiny_tts

RATE = 24000


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A tiny cloning model as released folders are: no speaker contrast."""
    return tiny_tts(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def pushed(plain, tmp_path_factory):
    """The same model with a centre and strength 2 in its folder."""
    folder = tmp_path_factory.mktemp("pushed") / "model"
    shutil.copytree(plain, folder)
    centre = torch.linspace(-1.0, 1.0, 32)
    SpeakerContrast(centre, 2.0, utterances=7).save(folder)
    return folder


@pytest.fixture(autouse=True)
def _short_speech(monkeypatch):
    # Random weights never choose end-of-speech; a short duration guard ends each utterance
    # early (the contracts tested here do not depend on its length).
    with short_guard(monkeypatch, 0.4, 0.0):
        yield


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    t = np.arange(int(2.5 * RATE)) / RATE
    wav = 0.3 * np.sin(2 * np.pi * 160 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    path = tmp_path_factory.mktemp("clip") / "ref.wav"
    sf.write(path, wav.astype(np.float32), RATE)
    return path


def test_the_push_scales_each_vectors_offset_from_the_centre():
    centre = torch.tensor([1.0, -2.0, 0.5])
    contrast = SpeakerContrast(centre, 2.5)
    v = torch.tensor([[2.0, -2.0, 0.0], [1.0, 1.0, 1.0]])
    assert torch.allclose(contrast.apply(v), centre + 2.5 * (v - centre))
    # The centre itself stays where it is; strength 1 changes nothing.
    assert torch.allclose(contrast.apply(centre), centre)
    assert contrast.with_strength(1.0).apply(v) is v
    # 16-bit vectors come back in their dtype, computed in float32.
    half = contrast.apply(v.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    assert torch.allclose(half.float(), contrast.apply(v), atol=0.05)
    with pytest.raises(InputError, match="different speaker encoders"):
        contrast.apply(torch.zeros(4))


@pytest.mark.parametrize("strength", [0.0, -1.0, math.nan, math.inf])
def test_a_strength_must_be_a_number_above_zero(strength):
    with pytest.raises(InputError, match="above 0"):
        SpeakerContrast(torch.zeros(3), strength)


def test_the_centre_is_the_mean_of_the_training_vectors():
    vectors = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]])
    contrast = SpeakerContrast.from_vectors(vectors, 3.0)
    assert torch.allclose(contrast.centre, torch.tensor([3.0, 3.0]))
    assert contrast.strength == 3.0 and contrast.utterances == 3
    with pytest.raises(InputError, match="N, enc_dim"):
        SpeakerContrast.from_vectors(torch.zeros(0, 2))


def test_the_folder_round_trip_keeps_centre_strength_and_count(pushed, plain):
    loaded = SpeakerContrast.load(pushed)
    assert loaded is not None and loaded.strength == 2.0 and loaded.utterances == 7
    assert torch.equal(loaded.centre, torch.linspace(-1.0, 1.0, 32))
    assert json.loads((pushed / "config.json").read_text())["speaker_contrast"] == {"strength": 2.0}
    assert SpeakerContrast.load(plain) is None
    assert TTS.from_pretrained(plain).speaker_contrast is None


def test_clones_are_pushed_only_by_a_model_that_declares_it(plain, pushed, clip):
    raw = TTS.from_pretrained(plain).voice(clip).speaker
    tts = TTS.from_pretrained(pushed)
    centre = tts.speaker_contrast.centre
    assert torch.allclose(tts.voice(clip).speaker, centre + 2.0 * (raw - centre), atol=1e-5)
    # In-context voices carry the pushed vector too.
    in_context = tts.voice(clip, ref_text="a short clip")
    assert torch.allclose(in_context.speaker, centre + 2.0 * (raw - centre), atol=1e-5)
    # Strength 1 gives back the encoder's vector; the pushed voice changes the speech.
    tts.set_speaker_contrast(1.0)
    assert torch.allclose(tts.voice(clip).speaker, raw, atol=1e-6)
    tts.set_speaker_contrast(2.0)
    unpushed = TTS.from_pretrained(plain)
    a = tts.codes("Hello.", tts.voice(clip), seed=0)
    b = unpushed.codes("Hello.", unpushed.voice(clip), seed=0)
    assert not torch.equal(a, b)


def test_a_model_without_a_centre_takes_only_strength_one(plain):
    tts = TTS.from_pretrained(plain)
    tts.set_speaker_contrast(1.0)
    assert tts.speaker_contrast is None
    with pytest.raises(InputError, match="no speaker centre"):
        tts.set_speaker_contrast(2.0)
    with pytest.raises(InputError, match="above 0"):
        tts.set_speaker_contrast(-2.0)


def test_save_pretrained_keeps_the_contrast(pushed, tmp_path):
    tts = TTS.from_pretrained(pushed)
    tts.set_speaker_contrast(1.5)
    tts.save_pretrained(tmp_path / "again")
    again = TTS.from_pretrained(tmp_path / "again").speaker_contrast
    assert again is not None and again.strength == 1.5 and again.utterances == 7


def test_bfloat16_storage_keeps_the_count_and_rounds_only_the_centre(pushed, tmp_path):
    from omnispeech.bundled import store_bf16

    stored = SpeakerContrast.load(store_bf16(pushed, tmp_path / "bf16"))
    assert stored is not None and stored.strength == 2.0 and stored.utterances == 7
    centre = torch.linspace(-1.0, 1.0, 32)
    assert torch.equal(stored.centre, centre.to(torch.bfloat16).float())


def test_a_declared_contrast_without_its_file_is_a_checkpoint_error(pushed, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(pushed, broken)
    (broken / FILE).unlink()
    with pytest.raises(CheckpointError, match="unreadable speaker contrast"):
        TTS.from_pretrained(broken)
    config = json.loads((pushed / "config.json").read_text())
    config["speaker_contrast"] = {"strength": "strong"}
    shutil.copy(pushed / FILE, broken / FILE)
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="speaker contrast"):
        TTS.from_pretrained(broken)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--contrast", "2"], "--contrast needs --clone"),
        (["--contrast", "0", "--clone", "CLIP"], "--contrast must be a number > 0"),
        (["--contrast", "3", "--clone", "CLIP", "-m", "PLAIN"], "no speaker centre"),
    ],
)
def test_cli_contrast_errors_are_one_line(args, message, plain, clip, tmp_path):
    args = [str(clip) if a == "CLIP" else str(plain) if a == "PLAIN" else a for a in args]
    out = tmp_path / "out.wav"
    result = CliRunner().invoke(main, ["tts", "Hello.", "-o", str(out), *args])
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_cli_contrast_changes_the_voice(pushed, clip, tmp_path):
    runner = CliRunner()
    waves = []
    for strength in ("1", "2"):
        out = tmp_path / f"s{strength}.wav"
        args = ["tts", "Hi.", "--clone", str(clip), "-m", str(pushed), "--seed", "0"]
        result = runner.invoke(main, [*args, "--contrast", strength, "-o", str(out)])
        assert result.exit_code == 0, result.output
        waves.append(sf.read(out)[0])
    assert not (len(waves[0]) == len(waves[1]) and np.array_equal(*waves))
