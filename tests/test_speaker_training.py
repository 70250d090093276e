"""Speaker-encoder training: config, manifests with bad lines, reproducible crops, the margin
loss, verification scores, learning, exact resume (one process after SIGTERM, two under
torchrun), and an export that SpeakerEncoder and the TTS trainer load unchanged."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from omnispeech.cli import main
from omnispeech.errors import ConfigError
from omnispeech.talker import SpeakerEncoder
from omnispeech.testing import read_log, torchrun_train
from omnispeech.training.speaker_config import SpeakerTrainConfig
from omnispeech.training.speaker_data import SpeakerBatcher, read_voices
from omnispeech.training.speaker_model import aam_logits, equal_error_rate, verification_scores
from omnispeech.training.speaker_trainer import SpeakerTrainer
from omnispeech.training.workers import Workers

RECIPES = Path(__file__).parents[1] / "recipes" / "speaker"
TINY = json.loads((RECIPES / "tiny.json").read_text())
CPU = Workers(0, 1, torch.device("cpu"))


def _voice(speaker: int, utterance: int, seconds: float, rate: int = 24000) -> np.ndarray:
    """A voiced sound standing in for one speaker: the speaker sets the pitch and the
    formant that shapes the harmonics; each utterance varies the pitch a little and the
    syllable rhythm."""
    rng = np.random.default_rng([speaker, utterance])
    t = np.arange(round(seconds * rate)) / rate
    f0 = (90 + 35 * speaker) * (1 + 0.03 * rng.standard_normal())
    phase = 2 * np.pi * f0 * (t + 0.004 * np.sin(2 * np.pi * 4 * t))
    formant = 400 + 350 * speaker
    x = sum(
        (np.exp(-(((k * f0 - formant) / 300) ** 2)) + 0.05 / k) * np.sin(k * phase)
        for k in range(1, 16)
        if k * f0 < rate / 2
    )
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(2.5, 4.5) * t + rng.uniform(0, 6)), 0, 1)
    x = x * (0.3 + 0.7 * syllables)
    x = 0.4 * x / np.abs(x).max() + 0.003 * rng.standard_normal(t.size)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Six training voices and three held-out ones, three clips each, as `data build` writes
    them (a 24 kHz copy beside the first rate's file); one voice only at 16 kHz; a missing
    file, a corrupt one and a line without a speaker."""
    root = tmp_path_factory.mktemp("speaker_corpus")
    lines = []
    for speaker in range(9):
        split = "train" if speaker < 6 else "dev"
        for utt in range(3):
            name = f"s{speaker}u{utt}.wav"
            wav = _voice(speaker, utt, 1.1 + 0.2 * utt)
            if speaker == 5:  # no 24 kHz copy: resampled on the fly
                sf.write(root / name, _voice(speaker, utt, 1.1 + 0.2 * utt, 16000), 16000)
                paths = {"16000": name}
            else:
                (root / "w24").mkdir(exist_ok=True)
                sf.write(root / "w24" / name, wav, 24000)
                sf.write(root / name, wav[::3], 8000)  # the first rate's copy, never read
                paths = {"8000": name, "24000": f"w24/{name}"}
            voice = f"synth:v{speaker}"
            lines.append({"path": name, "paths": paths, "text": "a", "language": "en",
                          "split": split, "speaker": voice})  # fmt: skip
    (root / "broken.wav").write_bytes(b"RIFF" + bytes(40) + b"garbage")
    lines += [
        {"path": "broken.wav", "split": "train", "speaker": "synth:v0"},
        {"path": "gone.wav", "split": "train", "speaker": "synth:v1"},
        {"path": "s0u0.wav", "split": "train"},
    ]
    for line in lines[-3:]:
        line.update(text="a", language="en")  # the TTS trainer reads this manifest too
    (root / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


def _config(corpus: Path, **run) -> SpeakerTrainConfig:
    manifest = str(corpus / "manifest.jsonl")
    data = {**TINY, "data": {**TINY["data"], "train": manifest, "valid": manifest}}
    data["run"] = {**TINY["run"], "steps": 4, "save_every": 2, "log_every": 1, **run}
    return SpeakerTrainConfig.from_dict(data)


def test_recipes_load_and_bad_config_is_one_clear_error(tmp_path):
    bundled = SpeakerTrainConfig.from_file(RECIPES / "bundled.json")
    assert bundled.model.enc_dim == 256 and bundled.data.batch_size == 32
    assert bundled.model.encoder_config().enc_channels == (128, 128, 128, 128, 384)
    with pytest.raises(ConfigError, match=r"unknown config keys \['enc_dims'\]"):
        SpeakerTrainConfig.from_dict({"model": {"enc_dims": 8}})
    with pytest.raises(ConfigError, match="sum of enc_channels"):
        SpeakerTrainConfig.from_dict({"model": {"enc_channels": [16, 16, 16, 16, 40]}})
    with pytest.raises(ConfigError, match="crop_seconds"):
        SpeakerTrainConfig.from_dict({"data": {"crop_seconds": [3.0, 2.0]}})


def test_manifest_reads_the_24k_copies_and_counts_what_it_skips(corpus):
    train, skipped = read_voices(corpus / "manifest.jsonl", "train")
    assert dict(skipped) == {"missing": 1, "unreadable": 1, "no_speaker": 1}
    assert len(train) == 18 and len({c.speaker for c in train}) == 6
    assert {c.rate for c in train if c.speaker != "synth:v5"} == {24000}
    assert {c.rate for c in train if c.speaker == "synth:v5"} == {16000}
    dev, _ = read_voices(corpus / "manifest.jsonl", "dev")
    assert {c.speaker for c in dev} == {"synth:v6", "synth:v7", "synth:v8"}


def test_batches_depend_only_on_seed_step_rank(corpus):
    train, _ = read_voices(corpus / "manifest.jsonl", "train")
    data = _config(corpus).data
    a, b = SpeakerBatcher(train, data, 3).batch(5, 0), SpeakerBatcher(train, data, 3).batch(5, 0)
    assert torch.equal(a.wav, b.wav) and torch.equal(a.labels, b.labels)
    other = SpeakerBatcher(train, data, 3).batch(5, 1)
    assert not torch.equal(other.wav[0, : other.wav.shape[1] // 2], a.wav[0, : a.wav.shape[1] // 2])
    lengths = {SpeakerBatcher(train, data, 3).batch(s, 0).wav.shape[1] for s in range(6)}
    assert len(lengths) > 1 and all(12000 <= n <= 19200 for n in lengths)  # 0.5-0.8 s
    assert a.wav.shape[0] == 8 and a.wav.abs().max() <= 1.0 and a.wav.std() > 0.01
    # The 16 kHz-only voice comes resampled to 24 kHz, at full length.
    v5 = SpeakerBatcher(train, data, 3).speakers.index("synth:v5")
    crops = [b.wav[i] for s in range(20) if (b := SpeakerBatcher(train, data, 3).batch(s, 0))
             for i in (b.labels == v5).nonzero().flatten().tolist()]  # fmt: skip
    assert crops and all(c[-100:].abs().max() > 0 for c in crops)


def test_margin_penalises_the_true_speaker_only():
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    weight = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # any norm
    labels = torch.tensor([0, 1])
    plain = aam_logits(emb, weight, labels, 0.0, 10.0)
    cosine = torch.tensor([[1.0, 0.0, -1.0], [0.6, 0.8, -0.6]])
    torch.testing.assert_close(plain, 10 * cosine)
    margin = aam_logits(emb, weight, labels, 0.3, 10.0)
    theta = torch.acos(torch.tensor(0.8))
    assert margin[1, 1] == pytest.approx(10 * torch.cos(theta + 0.3).item(), abs=1e-4)
    assert margin[0, 0] < plain[0, 0]  # an exact match still pays the margin
    off = torch.tensor([[False, True, True], [True, False, True]])
    assert torch.equal(margin[off], plain[off])


def test_equal_error_rate_and_similarity_gap():
    same = np.array([True, True, False, False, False])
    assert equal_error_rate(np.array([0.9, 0.8, 0.3, 0.2, 0.1]), same) == 0.0
    assert equal_error_rate(np.array([0.1, 0.2, 0.7, 0.8, 0.9]), same) == 1.0
    # One same pair below one different pair: 1 of 2 rejected vs 1 of 3 accepted.
    assert equal_error_rate(np.array([0.9, 0.4, 0.5, 0.2, 0.1]), same) == pytest.approx(5 / 12)
    with pytest.raises(ValueError, match="same-speaker and different-speaker"):
        equal_error_rate(np.array([0.5]), np.array([True]))
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0]]), dim=1)
    scores = verification_scores(emb, ["a", "a", "b"])
    assert scores["valid_eer"] == 0.0
    assert scores["valid_sim_same"] == pytest.approx(0.99 / 1.01, abs=1e-6)
    assert scores["valid_sim_gap"] == pytest.approx(
        scores["valid_sim_same"] - scores["valid_sim_other"]
    )


def test_loss_falls_sigterm_resumes_exactly_and_the_export_round_trips(corpus, tmp_path):
    cfg = _config(corpus, steps=100, save_every=100)
    stopped = SpeakerTrainer(cfg, tmp_path / "stopped", CPU)
    assert stopped.speakers == [f"synth:v{i}" for i in range(6)]
    step = stopped.train_step

    def step_then_kill() -> dict[str, float]:
        out = step()
        if stopped.step == 2:  # as `kill` would, in the middle of the run
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    stopped.train_step = step_then_kill
    stopped.fit(steps=6, progress=False)
    assert stopped.stopped_by == signal.SIGTERM and stopped.step == 2
    resumed = SpeakerTrainer(cfg, tmp_path / "stopped", CPU)
    resumed.fit(steps=10, progress=False)
    straight = SpeakerTrainer(cfg, tmp_path / "straight", CPU)
    straight.fit(steps=10, progress=False)
    assert resumed.step == straight.step == 10
    expected = straight.model.state_dict()
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    log = [json.loads(x) for x in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    first, last = np.mean([r["total"] for r in log[:3]]), np.mean([r["total"] for r in log[-3:]])
    assert last < 0.85 * first, (first, last)  # the margin loss falls within a few steps
    assert 0 <= log[-1]["valid_eer"] <= 1 and "valid_sim_gap" in log[-1]
    # The export is the encoder alone, in the Qwen3-TTS Base layout, and loads unchanged.
    folder = tmp_path / "straight" / "model"
    config = json.loads((folder / "config.json").read_text())
    assert config["tts_model_type"] == "base" and config["speaker_encoder_config"]["enc_dim"] == 32
    loaded = SpeakerEncoder.from_pretrained(folder)
    wav = torch.from_numpy(_voice(7, 0, 1.3))
    straight.model.eval()
    trained = straight.model.encoder.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in loaded.state_dict().items())
    # The same weights at other addresses: loaded tensors are views into the file, not 64-byte
    # aligned, and oneDNN's convs then take other code paths on some CPUs (an AMD EPYC: 2e-6 of
    # outputs near 30), so the embeddings agree to float32 rounding, not bit for bit.
    torch.testing.assert_close(
        loaded.embed(wav), straight.model.encoder.embed(wav), rtol=1e-5, atol=1e-5
    )
    from safetensors import safe_open

    with safe_open(folder / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert keys and all(k.startswith("speaker_encoder.") for k in keys)
    assert not any("classifier" in k for k in keys)


def test_a_folder_with_only_a_checkpoint_is_exported_at_its_step(corpus, tmp_path):
    cfg = _config(corpus, steps=4, save_every=2)
    run = SpeakerTrainer(cfg, tmp_path / "run", CPU)
    run.fit(progress=False)
    # An earlier step of a finished run, copied alone into a new folder, to be exported.
    (tmp_path / "early" / "checkpoints").mkdir(parents=True)
    name = "step-00000002.pt"
    (tmp_path / "early" / "checkpoints" / name).write_bytes(
        (tmp_path / "run" / "checkpoints" / name).read_bytes()
    )
    early = SpeakerTrainer(cfg, tmp_path / "early", CPU)
    folder = early.fit(steps=2, progress=False)
    assert early.step == 2 and (folder / "model.safetensors").is_file()
    loaded = SpeakerEncoder.from_pretrained(folder)
    at_two = torch.load(tmp_path / "run" / "checkpoints" / name, weights_only=True)["model"]
    weights = {k.removeprefix("encoder."): v for k, v in at_two.items() if k.startswith("encoder.")}
    assert all(torch.equal(v, weights[k]) for k, v in loaded.state_dict().items())
    # The step-4 export of the finished run is another model.
    final = SpeakerEncoder.from_pretrained(tmp_path / "run" / "model")
    assert not all(torch.equal(v, final.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_the_tts_trainer_takes_the_export_as_its_speaker_encoder(corpus, tmp_path):
    from omnispeech.training.tts_config import TTSTrainConfig
    from omnispeech.training.tts_trainer import TTSTrainer
    from tests.tts_ref import tiny_codec

    run = SpeakerTrainer(_config(corpus, steps=1, save_every=1), tmp_path / "spk", CPU)
    folder = run.fit(progress=False)
    tts = json.loads((Path(__file__).parents[1] / "recipes" / "tts" / "tiny.json").read_text())
    tts["model"] = {**tts["model"], "hidden_size": 32, "speaker_encoder": str(folder)}
    tts["data"].update(train=str(corpus / "manifest.jsonl"), codec=str(tiny_codec(tmp_path / "c")))
    trainer = TTSTrainer(TTSTrainConfig.from_dict(tts), tmp_path / "tts", CPU, progress=False)
    assert trainer.speaker_encoder is not None
    assert torch.equal(trainer.speaker_encoder.fc.weight, run.model.encoder.fc.weight)
    # Every cached utterance got an x-vector of the talker's width from the trained encoder.
    assert trainer.train_cache.speakers.shape == (len(trainer.train_cache.utterances), 32)


def test_two_process_training_resumes_exactly(corpus, tmp_path):
    cfg = {
        **TINY,
        "data": {**TINY["data"], "train": "manifest.jsonl", "valid": "manifest.jsonl"},
        "run": {**TINY["run"], "steps": 4, "save_every": 2, "log_every": 1},
    }
    config = corpus / "ddp.json"
    config.write_text(json.dumps(cfg))
    torchrun_train("speaker", config, tmp_path / "straight", 4)
    torchrun_train("speaker", config, tmp_path / "resumed", 2)  # stops at the step-2 checkpoint...
    torchrun_train("speaker", config, tmp_path / "resumed", 4)  # ...and continues from it
    straight, resumed = read_log(tmp_path / "straight"), read_log(tmp_path / "resumed")
    assert sorted(straight) == sorted(resumed) == [1, 2, 3, 4]
    for step in (3, 4):
        for name in ("total", "accuracy", "valid_eer", "valid_sim_gap"):
            if name in straight[step]:
                assert resumed[step][name] == pytest.approx(straight[step][name], rel=1e-6)
    assert straight[3]["total"] != straight[4]["total"]  # the losses do move
    assert "valid_eer" in straight[4]
    a = SpeakerEncoder.from_pretrained(tmp_path / "straight" / "model").state_dict()
    b = SpeakerEncoder.from_pretrained(tmp_path / "resumed" / "model").state_dict()
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def _cli(config: Path, manifest: Path, out: Path):
    args = ["train", "speaker", "-c", str(config), "--train", str(manifest), "-o", str(out)]
    return CliRunner().invoke(main, [*args, "--steps", "1", "--quiet"])


def test_bad_input_is_one_line_each(corpus, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(TINY))
    lines = (corpus / "manifest.jsonl").read_text().splitlines()
    cases = {
        "empty.jsonl": ([], "no usable utterances of split 'train' (skipped: none listed)"),
        "one.jsonl": (
            lines[:3],
            "1 training speaker(s) in split 'train'; telling voices apart "
            "needs at least 2 (the 'speaker' field of each line)",
        ),
        "bad.jsonl": (
            lines[-3:],
            "no usable utterances of split 'train' (skipped: missing 1, "
            "no_speaker 1, unreadable 1)",
        ),
    }
    for name, (content, message) in cases.items():
        manifest = corpus / name  # beside the audio its lines name
        manifest.write_text("".join(f"{x}\n" for x in content))
        result = _cli(config, manifest, tmp_path / name)
        assert result.exit_code == 1, result.output
        assert result.output.strip().splitlines() == [f"Error: {manifest}: {message}"]
    # A corpus with bad lines trains on the rest and says what it skipped.
    result = _cli(config, corpus / "manifest.jsonl", tmp_path / "ok")
    assert result.exit_code == 0, result.output
    assert "skipped utterances: missing 1, no_speaker 1, unreadable 1" in result.output
    assert SpeakerEncoder.from_pretrained(tmp_path / "ok" / "model").embedding_size == 32
