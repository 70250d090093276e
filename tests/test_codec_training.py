"""Codec training: config, quantizer export, losses, data, and exact resume under torchrun."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from omnispeech.audio import mel_distance
from omnispeech.cli import main
from omnispeech.errors import ConfigError
from omnispeech.pipelines import Codec
from omnispeech.testing import read_log, torchrun_train
from omnispeech.training import CodecTrainConfig, TrainableCodec
from omnispeech.training.data import SegmentSampler, list_audio
from omnispeech.training.discriminators import CodecDiscriminators
from omnispeech.training.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)

TINY_MODEL = {
    "num_codebooks": 4,
    "codebook_size": 32,
    "encoder_filters": 4,
    "encoder_dim": 32,
    "encoder_layers": 1,
    "encoder_heads": 2,
    "decoder_hidden": 32,
    "decoder_layers": 1,
    "decoder_heads": 2,
    "decoder_latent": 32,
    "decoder_dim": 32,
}


def _voiced(seconds: float, f0: float, rate: int, seed: int) -> np.ndarray:
    """A vibrato tone with harmonics and a little noise: speech-like enough for a codec."""
    t = np.arange(round(seconds * rate)) / rate
    phase = 2 * np.pi * f0 * (t + 0.02 * np.sin(2 * np.pi * 3 * t))
    x = sum(0.3 / k * np.sin(k * phase) for k in (1, 2, 3))
    noise = 0.02 * np.random.default_rng(seed).standard_normal(t.size)
    return (x * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t)) + noise).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    (root / "train").mkdir()
    (root / "valid").mkdir()
    for i in range(4):
        sf.write(root / "train" / f"{i}.wav", _voiced(1.5, 110 + 40 * i, 24000, i), 24000)
    # Held out: another pitch, another rate, stereo.
    held = _voiced(1.0, 260, 16000, 9)
    sf.write(root / "valid" / "held.flac", np.stack([held, held], 1), 16000)
    return root


def _config(corpus: Path, **run) -> dict:
    return {
        "model": TINY_MODEL,
        "data": {"train": "train", "valid": "valid", "segment_seconds": 0.4, "batch_size": 2},
        "loss": {"disc_channels": 4, "disc_start": 1, "mpd_periods": [2, 3], "stft_windows": [512]},
        "run": {"steps": 4, "save_every": 2, "log_every": 1, "kmeans_iters": 2, **run},
    }


def _write_config(corpus: Path, name: str, **run) -> Path:
    path = corpus / name
    path.write_text(json.dumps(_config(corpus, **run)))
    return path


def test_config_is_strict_and_checks_rates(corpus):
    cfg = CodecTrainConfig.from_file(_write_config(corpus, "ok.json"))
    assert cfg.data.train == str(corpus / "train")  # relative to the config file
    assert cfg.model.hop_length == 1920
    with pytest.raises(ConfigError, match="unknown config keys"):
        CodecTrainConfig.from_dict({"model": {"num_codebook": 4}})
    with pytest.raises(ConfigError, match="unknown config sections"):
        CodecTrainConfig.from_dict({"models": {}})
    with pytest.raises(ConfigError, match="frame_rate"):
        CodecTrainConfig.from_dict({"model": {"frame_rate": 13.0}})
    with pytest.raises(ConfigError, match="must equal"):
        CodecTrainConfig.from_dict({"model": {"upsample_rates": [8, 5, 4]}})
    # Another sample rate and frame rate: 16 kHz, 25 Hz (640 samples per frame).
    other = CodecTrainConfig.from_dict(
        {
            "model": {
                "sample_rate": 16000,
                "encoder_ratios": [8, 5, 4, 2],
                "frame_rate": 25,
                "upsample_rates": [8, 5, 4],
            }
        }  # fmt: skip
    )
    assert other.model.hop_length == 640


def test_export_loads_as_codec_and_matches_training_model(corpus, tmp_path):
    cfg = CodecTrainConfig.from_dict(_config(corpus))
    torch.manual_seed(0)
    model = TrainableCodec(cfg.model, cfg.run)
    sampler = SegmentSampler(list_audio(corpus / "train"), 24000, 0.4, seed=0)
    model.train()
    model(sampler.batch(0, 0, 4))  # k-means initialises every codebook
    model.eval()
    folder = model.export(tmp_path / "model")
    codec = Codec.from_pretrained(folder)
    assert (codec.sample_rate, codec.frame_rate) == (24000, 12.5)
    wav = torch.from_numpy(_voiced(2.0, 150, 24000, 3))[None, None]
    with torch.no_grad():
        q = model.quantize(wav)
    codes, frames = codec.encode(wav)
    assert frames.tolist() == [25]  # 2 s = 25 frames of 80 ms
    # k-means on a tiny batch leaves duplicate entries, between which the two searches may
    # pick differently; the vectors they pick are the same. So: mostly the same codes, and
    # the exported dequantizer gives the training latent back from the exported codes...
    assert (codes == q.codes).float().mean() > 0.9
    latent = codec.decoder.quantizer(codes)
    torch.testing.assert_close(latent, q.latent, atol=1e-5, rtol=0)
    # ...and the exported decoder is the trained one: the same weights, the same output.
    # (Decoding the two latents would amplify their 1e-7 rounding through an untrained decoder.)
    trained = model.decoder.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in codec.decoder.state_dict().items())
    with torch.no_grad():
        torch.testing.assert_close(
            codec.decoder.decode_latent(latent), model.decoder.decode_latent(latent)
        )
    assert len(torch.unique(codes)) > 4


def test_losses_and_discriminators():
    disc = CodecDiscriminators((2, 3), (256,), 4)
    wav = torch.randn(3, 1, 4000) * 0.1
    judged = disc(wav)
    assert len(judged.logits) == len(judged.features) == 3
    assert all(x.shape[0] == 3 for x in judged.logits)
    ones = [torch.ones(2, 5)]
    zeros = [torch.zeros(2, 5)]
    assert discriminator_loss(ones, zeros) == 0 and discriminator_loss(zeros, ones) == 2
    assert generator_loss(ones) == 0
    feats = [[torch.randn(2, 3)]]
    assert feature_matching_loss(feats, feats) == 0
    # The spectral distance: zero for a copy, growing with added noise.
    clean = torch.from_numpy(_voiced(1.0, 180, 24000, 1))
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    scores = [mel_distance(clean + a * noise, clean, 24000) for a in (0.0, 0.003, 0.03, 0.3)]
    assert scores[0] == 0 and scores == sorted(scores) and scores[-1] > 0.5


def test_segments_depend_only_on_seed_step_rank(corpus):
    files = list_audio(corpus / "train")
    a = SegmentSampler(files, 24000, 0.4, seed=1)
    b = SegmentSampler(files, 24000, 0.4, seed=1)
    assert torch.equal(a.batch(5, 1, 3), b.batch(5, 1, 3))
    assert not torch.equal(a.batch(5, 0, 3), a.batch(5, 1, 3))
    assert a.batch(0, 0, 2).shape == (2, 1, 9600)
    # Other rates and channel counts are resampled and downmixed.
    held = SegmentSampler(list_audio(corpus / "valid"), 24000, 0.4, seed=1).batch(0, 0, 1)
    assert held.shape == (1, 1, 9600) and held.abs().max() > 0.1
    with pytest.raises(ConfigError, match="no such audio folder"):
        list_audio(corpus / "missing.jsonl")
    (corpus / "empty").mkdir(exist_ok=True)
    with pytest.raises(ConfigError, match="no audio files"):
        list_audio(corpus / "empty")


def test_a_corpus_manifest_gives_one_split_at_the_model_rate(tmp_path):
    # As `omnispeech data build` writes it: a path at the first rate, paths by rate, a split.
    lines = [
        {"path": f"wav16000/{i}.wav", "paths": {"16000": f"wav16000/{i}.wav",
         "24000": f"wav24000/{i}.wav"}, "split": split}
        for i, split in enumerate(["train", "dev", "train", "test"])
    ] + [{"path": "other.wav"}]  # fmt: skip
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    names = [p.relative_to(tmp_path).as_posix() for p in list_audio(manifest, "train", 24000)]
    assert names == ["wav24000/0.wav", "wav24000/2.wav", "other.wav"]
    assert [p.name for p in list_audio(manifest, "dev", 16000)] == ["1.wav", "other.wav"]
    assert len(list_audio(manifest)) == 5  # no split: every line, at its `path`
    manifest.write_text(json.dumps(lines[0]) + "\n")
    with pytest.raises(ConfigError, match="no audio files of split 'dev'"):
        list_audio(manifest, "dev")


def test_two_process_training_resumes_exactly(corpus, tmp_path):
    config = _write_config(corpus, "ddp.json")
    torchrun_train("codec", config, tmp_path / "straight", 4)
    torchrun_train("codec", config, tmp_path / "resumed", 2)  # stops at the step-2 checkpoint...
    torchrun_train("codec", config, tmp_path / "resumed", 4)  # ...and continues from it
    straight, resumed = read_log(tmp_path / "straight"), read_log(tmp_path / "resumed")
    assert sorted(straight) == sorted(resumed) == [1, 2, 3, 4]
    for step in (3, 4):
        for name in ("total", "mel", "discriminator", "valid_mel_distance"):
            if name in straight[step]:
                assert resumed[step][name] == pytest.approx(straight[step][name], rel=1e-6)
    assert straight[3]["total"] != straight[4]["total"]  # the losses do move
    assert straight[4]["discriminator"] > 0  # the discriminators joined at step 2
    ckpts = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert ckpts == ["step-00000002.pt", "step-00000004.pt"]
    codec = Codec.from_pretrained(tmp_path / "resumed" / "model")
    codes, _ = codec.encode(torch.from_numpy(_voiced(0.5, 150, 24000, 2))[None, None])
    assert codes.shape == (1, 4, 7)


def test_a_resume_with_a_faster_decay_anneals_from_where_the_run_stands(corpus, tmp_path):
    config = _config(corpus, steps=2, save_every=2)
    first = corpus / "anneal.json"
    first.write_text(json.dumps(config))
    out = tmp_path / "run"
    args = ["train", "codec", "-o", str(out), "--quiet"]
    assert CliRunner().invoke(main, [*args, "-c", str(first)]).exit_code == 0
    cool = corpus / "cool.json"
    cool.write_text(json.dumps({**config, "optim": {"lr_decay": 0.5}}))
    result = CliRunner().invoke(main, [*args, "-c", str(cool), "--steps", "4"])
    assert result.exit_code == 0, result.output

    def lr(step: int) -> float:
        state = torch.load(out / "checkpoints" / f"step-{step:08d}.pt", weights_only=True)
        return state["opt_g"]["param_groups"][0]["lr"]

    assert lr(2) == pytest.approx(3e-4 * 0.99999**2)
    assert lr(4) == pytest.approx(lr(2) * 0.5**2)
    # The bundled 25 Hz recipe's cool-down changes nothing else, and takes 10x over 2,000 steps.
    recipes = Path(__file__).parents[1] / "recipes" / "codec"
    main_run, cool_down = (
        CodecTrainConfig.from_file(recipes / f).to_dict()
        for f in ("bundled25.json", "bundled25_cooldown.json")
    )
    assert cool_down["optim"].pop("lr_decay") ** 2000 == pytest.approx(0.1, rel=1e-3)
    main_run["optim"].pop("lr_decay")
    assert cool_down == main_run


def test_cli_reports_bad_config_in_one_line(corpus, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {"num_codebooks": 1}}')
    result = CliRunner().invoke(main, ["train", "codec", "-c", str(bad), "-o", str(tmp_path)])
    assert result.exit_code != 0
    assert "num_codebooks must be >= 2" in result.output
    missing = CliRunner().invoke(
        main, ["train", "codec", "-c", str(tmp_path / "nope.json"), "-o", str(tmp_path)]
    )
    assert missing.exit_code != 0 and "cannot read the config" in missing.output
    empty = tmp_path / "empty.json"
    empty.write_text('{"data": {"train": "nowhere"}}')
    result = CliRunner().invoke(main, ["train", "codec", "-c", str(empty), "-o", str(tmp_path)])
    assert result.exit_code != 0 and "no such audio folder" in result.output
    # Starting over in a folder with checkpoints is refused, and nothing there is touched.
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "step-00000002.pt").write_bytes(b"kept")
    args = ["train", "codec", "-c", str(_write_config(corpus, "fresh.json")), "-o", str(out)]
    result = CliRunner().invoke(main, [*args, "--no-resume"])
    assert result.exit_code != 0 and "already holds checkpoints" in result.output
    assert (out / "checkpoints" / "step-00000002.pt").read_bytes() == b"kept"


def _initialised_export(corpus: Path, folder: Path) -> Path:
    """A tiny codec with its codebooks initialised on one batch, exported to ``folder``."""
    cfg = CodecTrainConfig.from_dict(_config(corpus))
    torch.manual_seed(0)
    model = TrainableCodec(cfg.model, cfg.run)
    model.train()
    model(SegmentSampler(list_audio(corpus / "train"), 24000, 0.4, seed=0).batch(0, 0, 4))
    return model.export(folder)


def test_decoder_finetune_keeps_the_codes_and_moves_the_decoder(corpus, tmp_path):
    start = _initialised_export(corpus, tmp_path / "start")
    config = _write_config(corpus, "finetune.json")
    out = tmp_path / "ft"
    args = ["train", "codec", "-c", str(config), "-o", str(out), "--quiet"]
    result = CliRunner().invoke(main, [*args, "--finetune", str(start)])
    assert result.exit_code == 0, result.output
    log = read_log(out)
    assert log[4]["discriminator"] > 0 and log[4]["commitment"] == 0  # GAN on, no quantizer
    before, after = Codec.from_pretrained(start), Codec.from_pretrained(out / "model")
    wav = torch.from_numpy(_voiced(1.2, 170, 24000, 5))[None, None]
    assert torch.equal(before.encode(wav)[0], after.encode(wav)[0])
    enc_a, enc_b = before.encoder.state_dict(), after.encoder.state_dict()
    assert all(torch.equal(v, enc_b[k]) for k, v in enc_a.items())
    dec_a, dec_b = before.decoder.state_dict(), after.decoder.state_dict()
    frozen = [k for k in dec_a if k.startswith("quantizer.")]
    assert frozen and all(torch.equal(dec_a[k], dec_b[k]) for k in frozen)
    moved = [k for k in dec_a if k not in frozen and not torch.equal(dec_a[k], dec_b[k])]
    assert len(moved) > len(dec_a) // 2  # the decoder learned


def test_decoder_finetune_refuses_another_model_shape(corpus, tmp_path):
    start = _initialised_export(corpus, tmp_path / "start")
    other = _config(corpus)
    other["model"] = {**TINY_MODEL, "decoder_dim": 48}
    path = corpus / "other_shape.json"
    path.write_text(json.dumps(other))
    with pytest.raises(ConfigError, match="decoder_config differs .* in decoder_dim"):
        TrainableCodec(
            CodecTrainConfig.from_file(path).model, CodecTrainConfig.from_file(path).run
        ).finetune_decoder(start)
    args = ["train", "codec", "-c", str(path), "-o", str(tmp_path / "x"), "--finetune"]
    result = CliRunner().invoke(main, [*args, str(start)])
    assert result.exit_code != 0 and "decoder_dim" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(main, [*args, str(tmp_path / "nowhere")])
    assert result.exit_code != 0 and "no such checkpoint folder" in result.output
    shutil.copytree(start, tmp_path / "tts")  # weights, but the config of another model
    (tmp_path / "tts" / "config.json").write_text('{"model_type": "qwen3_tts"}')
    result = CliRunner().invoke(main, [*args, str(tmp_path / "tts")])
    assert result.exit_code != 0 and "not an exported codec" in result.output


def test_run_compile_turns_the_compiled_ops_on_for_the_run_only(corpus, tmp_path, monkeypatch):
    """``run.compile`` (default off) holds for the training loop, and is undone after it."""
    from omnispeech.kernels import compiled
    from omnispeech.training import trainer as trainer_module

    seen = []

    def loop(*args, **kwargs):
        seen.append(compiled._state["enabled"])
        return tmp_path / "model"

    monkeypatch.setattr(trainer_module, "fit_steps", loop)
    for flag in (True, False):
        run = {"compile": True} if flag else {}
        cfg = CodecTrainConfig.from_file(_write_config(corpus, f"compile{flag}.json", **run))
        trainer_module.CodecTrainer(cfg, tmp_path / f"run{flag}").fit(progress=False)
    assert seen == [True, False]
    assert not compiled._state["enabled"]
