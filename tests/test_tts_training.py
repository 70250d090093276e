"""TTS training: config errors, the dual-track arrangement, the code cache (corrupt files
skipped and counted), learning, exact resume (one process and two under torchrun), an export
that TTS.from_pretrained runs, and the single-stream (ARIA) arrangement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from omnispeech.errors import ConfigError
from omnispeech.interleave import tts_non_streaming, tts_streaming
from omnispeech.pipelines.tts import TTS
from omnispeech.talker import TalkerTokens
from omnispeech.testing import torchrun_train
from omnispeech.training.tts_batch import IGNORE, NONE, arrange
from omnispeech.training.tts_config import TTSTrainConfig
from omnispeech.training.tts_trainer import TTSTrainer
from tests.tts_ref import short_guard, tiny_codec

RECIPE = Path(__file__).parents[1] / "recipes" / "tts" / "tiny.json"
RECIPES = ("aria25.json", "aria.json")  # the bundled recipe at 25 and at 12.5 frames per second
TEXTS = ["open the file", "close the window", "save it now", "print the page"]
# Smaller than the recipe, so that a step takes milliseconds.
TINY_MODEL = {
    "hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 2,
    "num_kv_heads": 1, "head_dim": 16, "text_hidden_size": 32, "predictor_hidden_size": 32,
    "predictor_intermediate_size": 64, "predictor_layers": 1, "predictor_heads": 2,
    "predictor_kv_heads": 1, "predictor_head_dim": 16, "max_positions": 512,
}  # fmt: skip


def _tone(seconds: float, f0: float, seed: int) -> np.ndarray:
    t = np.arange(round(seconds * 24000)) / 24000
    x = sum(0.2 / k * np.sin(2 * np.pi * k * f0 * t) for k in (1, 2, 3))
    return (x + 0.01 * np.random.default_rng(seed).standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Tones standing in for speech (train and dev lines), one corrupt file behind a valid
    extension, and a tiny 16-codebook codec."""
    root = tmp_path_factory.mktemp("tts_corpus")
    lines = []
    for n, text in enumerate(TEXTS):
        for split in ("train", "dev"):
            path = root / f"u{n}{split}.wav"
            sf.write(path, _tone(0.5 + 0.1 * n, 110 + 20 * n, n), 24000)
            lines.append({"path": path.name, "text": text, "language": "en", "split": split})
    (root / "broken.wav").write_bytes(b"RIFF" + bytes(40) + b"garbage")
    lines.append({"path": "broken.wav", "text": "x y", "language": "en", "split": "train"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    tiny_codec(root / "codec")
    return root


def _config(corpus: Path, **run) -> TTSTrainConfig:
    data = json.loads(RECIPE.read_text())
    data["model"] = {**TINY_MODEL, "text_modes": ["stream", "full"]}
    data["data"].update(
        train=str(corpus / "manifest.jsonl"),
        valid=str(corpus / "manifest.jsonl"),
        codec=str(corpus / "codec"),
        batch_frames=200,
        text_vocab_size=300,
    )
    data["optim"] = {"lr": 0.01, "warmup": 2}
    data["run"] = {"steps": 30, "save_every": 30, "log_every": 10, "seed": 0, **run}
    return TTSTrainConfig.from_dict(data)


def test_recipe_loads_and_unknown_keys_are_one_clear_error(tmp_path):
    cfg = TTSTrainConfig.from_file(RECIPE)
    assert cfg.model.arrangement == "dual" and cfg.model.hidden_size == 64
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": {"hiden_size": 8}}))
    with pytest.raises(ConfigError) as err:
        TTSTrainConfig.from_file(bad)
    assert "\n" not in str(err.value) and "hiden_size" in str(err.value)
    bad.write_text(json.dumps({"model": {"arrangement": "triple"}}))
    with pytest.raises(ConfigError, match="arrangement"):
        TTSTrainConfig.from_file(bad)
    bad.write_text(json.dumps({"sampling": {"predictor_temperature": 0}}))
    with pytest.raises(ConfigError, match="temperatures must be > 0"):
        TTSTrainConfig.from_file(bad)
    bad.write_text(json.dumps({"modle": {}}))
    with pytest.raises(ConfigError, match="unknown config sections"):
        TTSTrainConfig.from_file(bad)


@pytest.mark.parametrize("mode", ["stream", "full"])
def test_arrangement_is_the_released_prompt_then_the_frames(mode):
    ids = TalkerTokens(tts_pad=1, tts_bos=2, tts_eos=3)
    codes = torch.arange(16 * 5).reshape(16, 5)  # K = 16 codebooks, N = 5 frames
    text = [40, 41, 42]
    seq = arrange(text, codes, ids, [7, 8, 9], 2050, True, mode)
    # Role header (text only), control prefix, speaker slot, codec_pad + tts_bos.
    assert seq.text[:3] == [7, 8, 9] and all(c == [NONE] * 16 for c in seq.codec[:3])
    control = [c[0] for c in seq.codec[3:9]]
    assert control == [ids.codec_think, ids.codec_think_bos, 2050, ids.codec_think_eos, NONE,
                       ids.codec_pad]  # fmt: skip
    assert seq.speaker_at == 7 and seq.text[3:9] == [1, 1, 1, 1, 1, 2]
    body = seq.text[9:-1]
    released = tts_streaming(text) if mode == "stream" else tts_non_streaming(text)
    expected = [p.text for p in released.stream(5 - released.first_generated_frame - 1)]
    assert body == [p.token if p.is_token else 3 if p.kind.name == "TEXT_END" else 1
                    for p in expected]  # fmt: skip
    # Frame f is produced after codec_bos (f = 0) or frame f - 1, and predicted there.
    for f, at in enumerate(seq.frame_at):
        assert seq.labels[at] == codes[0, f]
        assert seq.codec[at] == (
            [ids.codec_bos] + [NONE] * 15 if f == 0 else codes[:, f - 1].tolist()
        )
    assert seq.labels[-1] == ids.codec_eos and seq.codec[-1] == codes[:, -1].tolist()
    assert sum(label != IGNORE for label in seq.labels) == 5 + 1


def test_corrupt_audio_is_skipped_and_counted_and_the_cache_is_reused(corpus, tmp_path):
    trainer = TTSTrainer(_config(corpus), tmp_path / "run", progress=False)
    assert trainer.skipped["unreadable"] == 1
    assert len(trainer.train_cache.utterances) == len(TEXTS)
    u = trainer.train_cache.utterances[0]
    assert trainer.train_cache.codes_of(0).shape == (16, u.frames) and u.frames >= 6
    stamp = (tmp_path / "run" / "cache" / "train.safetensors").stat().st_mtime_ns
    again = TTSTrainer(_config(corpus), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "cache" / "train.safetensors").stat().st_mtime_ns == stamp
    assert torch.equal(again.train_cache.codes, trainer.train_cache.codes)


def test_overfitting_two_utterances_lowers_both_losses(corpus, tmp_path):
    trainer = TTSTrainer(_config(corpus, steps=30), tmp_path / "run", progress=False)
    trainer.batcher.usable = [0, 1]  # batches drawn from two utterances only
    trainer.model.train()
    first = trainer.train_step()
    for _ in range(29):
        last = trainer.train_step()
    assert last["talker"] < 0.5 * first["talker"]
    assert last["predictor"] < 0.7 * first["predictor"]


def test_resume_equals_an_uninterrupted_run(corpus, tmp_path):
    whole = TTSTrainer(_config(corpus, steps=4, save_every=2), tmp_path / "a", progress=False)
    whole.fit(progress=False)
    part = TTSTrainer(_config(corpus, steps=4, save_every=2), tmp_path / "b", progress=False)
    part.fit(steps=2, progress=False)
    resumed = TTSTrainer(_config(corpus, steps=4, save_every=2), tmp_path / "b", progress=False)
    resumed.fit(progress=False)
    assert resumed.step == whole.step == 4
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "valid_talker" in r] == [2, 4]


def test_export_loads_with_tts_from_pretrained_and_speaks(corpus, tmp_path, monkeypatch):
    trainer = TTSTrainer(_config(corpus, steps=2, save_every=2), tmp_path / "run", progress=False)
    folder = trainer.fit(progress=False)
    tts = TTS.from_pretrained(folder)
    assert tts.languages == ["auto", "english"] and tts.speaker_encoder is None
    with short_guard(monkeypatch, 0.4, 0.0):
        codes = tts.codes("open the file", language="english", seed=0)
        wav = tts.synthesize("save it", seed=1)
    assert codes.shape[0] == 16 and codes.shape[1] >= 1
    assert wav.ndim == 1 and wav.size > 0 and np.isfinite(wav).all()
    a = trainer.model.talker.state_dict()
    b = tts.talker.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_trains_exports_and_reports_config_errors_in_one_line(corpus, tmp_path):
    from click.testing import CliRunner

    from omnispeech.cli import main

    config = tmp_path / "tts.json"
    config.write_text(json.dumps(_config(corpus, steps=1, save_every=1).to_dict()))
    out = tmp_path / "run"
    args = ["train", "tts", "-c", str(config), "--codec", str(corpus / "codec"), "-o", str(out)]
    result = CliRunner().invoke(main, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "skipped utterances: unreadable 1" in result.output
    assert (out / "model" / "speech_tokenizer" / "config.json").is_file()
    config.write_text(json.dumps({"data": {"batch_frame": 10}}))
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        "Error: TTSDataConfig: unknown config keys ['batch_frame']"
    ]


def test_speaker_encoder_fills_the_slot_and_the_export_clones(corpus, tmp_path, monkeypatch):
    from tests.tts_ref import tiny_tts

    base = tiny_tts(tmp_path / "base")  # its speaker encoder gives 32 values = hidden_size
    root = tmp_path / "voices"
    root.mkdir()
    lines = []
    for n, text in enumerate(TEXTS[:2]):
        sf.write(root / f"v{n}.wav", _tone(1.2, 120 + 30 * n, n), 24000)
        lines.append({"path": f"v{n}.wav", "text": text, "language": "en", "split": "train"})
    sf.write(root / "short.wav", _tone(0.5, 150, 9), 24000)  # too short for an x-vector
    lines.append({"path": "short.wav", "text": "hi", "language": "en", "split": "train"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = _config(corpus, steps=2, save_every=2)
    cfg = cfg.replace(
        model=cfg.model.replace(speaker_encoder=str(base)),
        data=cfg.data.replace(train=str(root / "manifest.jsonl"), valid=""),
    )
    trainer = TTSTrainer(cfg, tmp_path / "run", progress=False)
    assert dict(trainer.skipped) == {"no_speaker_vector": 1}
    assert trainer.train_cache.speakers.shape == (2, 32)
    batch = trainer.batcher.batch(0, 0, 0)
    assert batch.speakers is not None and batch.speaker_mask.sum() == batch.text_ids.shape[0]
    tts = TTS.from_pretrained(trainer.fit(progress=False))
    assert tts.speaker_encoder is not None
    # The export holds its training voices' centre, at strength 1 (no voice changes).
    contrast = tts.speaker_contrast
    assert contrast is not None and contrast.strength == 1.0 and contrast.utterances == 2
    assert torch.allclose(contrast.centre, trainer.train_cache.speakers.mean(0), atol=1e-5)
    with short_guard(monkeypatch, 0.4, 0.0):
        wav = tts.synthesize("save it", tts.voice(root / "v0.wav"), seed=0)
    assert wav.size > 0 and np.isfinite(wav).all()


def test_single_stream_arrangement_predicts_each_frame_just_before_it():
    from omnispeech.interleave import build_single_stream
    from omnispeech.training.tts_batch import arrange_single
    from omnispeech.training.tts_config import TTSModelConfig

    ids = TalkerTokens(tts_pad=1, tts_bos=2, tts_eos=3)
    codes = torch.arange(16 * 9).reshape(16, 9)  # K = 16, N = 9 frames
    text = [40, 41, 42]
    policy = TTSModelConfig(arrangement="single").single_policy()
    seq = arrange_single(text, codes, ids, [7, 8, 9], None, False, policy)
    prefix = 3 + 3 + 1  # role header, [nothink, think_bos, think_eos], codec_pad + tts_bos
    assert [c[0] for c in seq.codec[3:prefix]] == [
        ids.codec_nothink, ids.codec_think_bos, ids.codec_think_eos, ids.codec_pad,
    ]  # fmt: skip
    stream = build_single_stream(text, 9, policy).positions
    assert len(seq.text) == prefix + len(stream)
    for k, pos in enumerate(stream):
        at = prefix + k
        if pos.is_speech:
            # Speech position: tts_pad + the frame itself; predicted one position earlier.
            assert seq.text[at] == 1 and seq.codec[at] == codes[:, pos.frame].tolist()
            assert seq.labels[at - 1] == codes[0, pos.frame]
            assert seq.frame_at[pos.frame] == at - 1
        else:
            token = pos.text.token if pos.text.is_token else 3
            assert seq.text[at] == token and seq.codec[at] == [ids.codec_pad] + [NONE] * 15
    assert seq.labels[-1] == ids.codec_eos
    assert sum(label != IGNORE for label in seq.labels) == 9 + 1


def test_single_stream_training_learns_and_records_its_arrangement(corpus, tmp_path):
    cfg = _config(corpus, steps=20, save_every=20)
    cfg = cfg.replace(model=cfg.model.replace(arrangement="single"))
    trainer = TTSTrainer(cfg, tmp_path / "run", progress=False)
    assert trainer.batcher.unfit == 0
    first = trainer.train_step()
    for _ in range(18):
        trainer.train_step()
    folder = trainer.fit(progress=False)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["talker"] < first["talker"] and np.isfinite(log[-1]["valid_talker"])
    config = json.loads((folder / "config.json").read_text())
    assert config["talker_arrangement"]["kind"] == "single"
    assert TTS.from_pretrained(folder).talker.num_code_groups == 16
    tight = cfg.replace(model=cfg.model.replace(min_frames_per_token=50, max_frames_per_token=60))
    with pytest.raises(ConfigError, match="no training utterance fits"):
        TTSTrainer(tight, tmp_path / "tight", progress=False)


def test_the_export_declares_the_sampling_of_its_config(corpus, tmp_path):
    """``sampling`` lands in generation_config.json, and TTS speaks with it by default."""
    cfg = _config(corpus, steps=2, save_every=2)
    cfg = cfg.replace(sampling=cfg.sampling.replace(temperature=0.6, predictor_top_k=10))
    folder = TTSTrainer(cfg, tmp_path / "run", progress=False).fit(progress=False)
    written = json.loads((folder / "generation_config.json").read_text())
    assert (written["temperature"], written["top_k"]) == (0.6, 50)
    assert (written["subtalker_temperature"], written["subtalker_top_k"]) == (0.9, 10)
    generation = TTS.from_pretrained(folder).generation
    assert generation.talker.temperature == 0.6 and generation.code_predictor.top_k == 10
    assert generation.talker.repetition_penalty == 1.05  # as released


def test_a_codec_at_25_hz_doubles_the_frames_and_the_pace_the_export_records(corpus, tmp_path):
    """The talker takes its frame rate from its codec: frames, word times and the export's
    text pace all follow it (recipes/tts/aria25.json is the bundled recipe at 25 Hz)."""
    fast = tiny_codec(tmp_path / "codec25", frame_rate=25.0)
    base = _config(corpus, steps=4, save_every=4)
    base = base.replace(model=base.model.replace(arrangement="single"))
    rates = {}
    for name, codec in (("slow", corpus / "codec"), ("fast", fast)):
        cfg = base.replace(data=base.data.replace(codec=str(codec)))
        trainer = TTSTrainer(cfg, tmp_path / name, progress=False)
        frames = [u.frames for u in trainer.train_cache.utterances]
        folder = trainer.fit(progress=False)
        arrangement = json.loads((folder / "config.json").read_text())["talker_arrangement"]
        rates[name] = (frames, trainer.frames_per_token, arrangement)
    (slow, slow_pace, _), (fast_frames, fast_pace, exported) = rates["slow"], rates["fast"]
    assert all(f in (2 * s - 1, 2 * s, 2 * s + 1) for f, s in zip(fast_frames, slow, strict=True))
    assert fast_pace == pytest.approx(2 * slow_pace, rel=0.15)
    assert exported["frames_per_token"] == pytest.approx(fast_pace)
    at_25, at_12 = (TTSTrainConfig.from_file(RECIPE.with_name(f)).model for f in RECIPES)
    assert at_25.min_frames_per_token == 2 * at_12.min_frames_per_token
    assert at_25.max_frames_per_token == 2 * at_12.max_frames_per_token


@pytest.mark.parametrize("mode", ["stream", "full"])
def test_training_inputs_equal_what_the_pipeline_feeds(corpus, tmp_path, mode):
    """The prompt part of a training sequence is build_prompt's prompt, vector for vector, and
    every later position is the previous frame's code embeddings plus the text item the
    generation loop adds there (trailing text, tts_eos, then tts_pad), up to the rounding of
    adding the same vectors in another order."""
    from omnispeech.pipelines.tts_prompt import TextTrack, VoicePrompt, build_prompt

    cfg = _config(corpus, steps=1)
    cfg = cfg.replace(model=cfg.model.replace(text_modes=(mode,), auto_language=0.0))
    trainer = TTSTrainer(cfg, tmp_path / "run", progress=False)
    batcher, talker = trainer.batcher, trainer.model.talker.eval()
    batch = batcher.make([1], np.random.default_rng(0))
    with torch.no_grad():
        x = trainer.model.embed(batch)[0]
        text_ids = batcher.text_ids[1]
        prompt = build_prompt(talker, batcher.role_ids, text_ids, "english", VoicePrompt(), mode)
        L = prompt.embeds.shape[1]
        torch.testing.assert_close(x[:L], prompt.embeds[0], rtol=1e-6, atol=1e-5)
        track = TextTrack(talker)
        codes = trainer.train_cache.codes_of(1)
        N = codes.shape[1]
        trailing = [track.tokens([t])[0] for t in prompt.trailing]
        if not prompt.end_in_prompt:
            trailing.append(track.eos)
        assert x.shape[0] == L + N  # frames 1..N-1 and the end-of-speech position follow
        frames = talker.embed_frames(codes[None])[0]
        for s in range(N):
            text = trailing[s] if s < len(trailing) else track.pad
            torch.testing.assert_close(x[L + s], frames[s] + text, rtol=1e-6, atol=1e-5)


def test_two_process_training_resumes_exactly(corpus, tmp_path):
    config = tmp_path / "ddp.json"
    cfg = _config(corpus, steps=4, save_every=2, log_every=1)
    config.write_text(json.dumps(cfg.to_dict()))
    torchrun_train("tts", config, tmp_path / "straight", 4)
    torchrun_train("tts", config, tmp_path / "resumed", 2)  # stops at the step-2 checkpoint...
    torchrun_train("tts", config, tmp_path / "resumed", 4)  # ...and continues from it
    logs = [
        {r["step"]: r for r in map(json.loads, (tmp_path / run / "log.jsonl").open())}
        for run in ("straight", "resumed")
    ]
    assert sorted(logs[0]) == sorted(logs[1]) == [1, 2, 3, 4]
    for step in (3, 4):
        assert logs[0][step]["total"] == logs[1][step]["total"]
    assert logs[0][4]["valid_talker"] == logs[1][4]["valid_talker"]
    a, b = (
        TTS.from_pretrained(tmp_path / run / "model").talker.state_dict()
        for run in ("straight", "resumed")
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_speaker_encoder_option_and_an_empty_corpus(corpus, tmp_path):
    from click.testing import CliRunner

    from omnispeech.cli import main
    from tests.tts_ref import tiny_tts

    base = tiny_tts(tmp_path / "base")  # its speaker encoder gives 32 values = hidden_size
    root = tmp_path / "voices"  # clips long enough for an x-vector (>= 1 s)
    root.mkdir()
    lines = []
    for n, text in enumerate(TEXTS[:3]):
        sf.write(root / f"v{n}.wav", _tone(1.2, 120 + 30 * n, n), 24000)
        split = "dev" if n == 2 else "train"
        lines.append({"path": f"v{n}.wav", "text": text, "language": "en", "split": split})
    (root / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    config = tmp_path / "tts.json"
    config.write_text(json.dumps(_config(corpus, steps=1, save_every=1).to_dict()))
    args = ["train", "tts", "-c", str(config), "--codec", str(corpus / "codec"), "--quiet"]
    out = tmp_path / "run"
    voices = ["--train", str(root / "manifest.jsonl"), "--valid", str(root / "manifest.jsonl")]
    result = CliRunner().invoke(
        main, [*args, *voices, "-o", str(out), "--speaker-encoder", str(base)]
    )
    assert result.exit_code == 0, result.output
    # The export carries the encoder the option named: it clones.
    assert TTS.from_pretrained(out / "model").speaker_encoder is not None
    result = CliRunner().invoke(
        main, [*args, "-o", str(tmp_path / "r2"), "--speaker-encoder", str(tmp_path / "none")]
    )
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert "none" in result.output and "Traceback" not in result.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "r3"), "--train", str(empty)])
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
