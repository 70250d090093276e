"""The codec's auxiliary latent-to-log-mel loss: shapes, where its gradient goes, that it
trains and resumes with the run, and that the exported folder does not carry its head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from omnispeech.checkpoint import CheckpointFolder
from omnispeech.cli import main
from omnispeech.pipelines import Codec
from omnispeech.testing import read_log
from omnispeech.training import CodecTrainConfig, TrainableCodec
from omnispeech.training.latent_mel import FRAMES_PER_LATENT, N_MELS, LatentMelHead
from tests.test_codec_training import TINY_MODEL


def _tone(seconds: float, f0: float, seed: int) -> np.ndarray:
    t = np.arange(round(seconds * 24000)) / 24000
    noise = 0.02 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * f0 * t) + noise).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("latent_mel")
    (root / "train").mkdir()
    for i in range(3):
        sf.write(root / "train" / f"{i}.wav", _tone(1.2, 120 + 50 * i, i), 24000)
    return root


def _config(corpus: Path, name: str, weight: float, **data) -> Path:
    cfg = {
        "model": TINY_MODEL,
        "data": {"train": "train", "segment_seconds": 0.4, "batch_size": 2, **data},
        "loss": {"latent_mel": weight, "disc_start": 100},
        "run": {"steps": 4, "save_every": 2, "log_every": 1, "kmeans_iters": 0},
    }
    path = corpus / name
    path.write_text(json.dumps(cfg))
    return path


def test_head_predicts_eight_frames_per_latent_frame_and_trains_the_encoder(corpus):
    cfg = CodecTrainConfig.from_file(_config(corpus, "shape.json", 1.0))
    torch.manual_seed(0)
    codec = TrainableCodec(cfg.model, cfg.run)
    head = LatentMelHead(cfg.model.encoder_dim, cfg.model.hop_length, cfg.model.sample_rate)
    wav = torch.from_numpy(np.stack([_tone(0.4, 150, 0), _tone(0.4, 220, 1)]))[:, None]
    out = codec(wav)
    assert out.latent.shape == (2, 32, 5)  # 9600 samples / 1920
    assert head.predict(out.latent).shape == (2, N_MELS, 5 * FRAMES_PER_LATENT)
    loss = head(out.latent, wav)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    # Through the straight-through quantizer into the encoder; the decoder is not on the path.
    assert codec.encoder.encoder.layers[0].conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in codec.decoder.parameters())
    with pytest.raises(ValueError, match="multiple of 32"):
        LatentMelHead(32, 1000, 24000)


def test_head_learns_the_log_mel_of_its_frame():
    """On a fixed latent that says which of two tones plays, the head's loss falls far below
    what the best constant prediction (the mean log-mel) scores."""
    torch.manual_seed(0)
    head = LatentMelHead(8, 1920, 24000)
    tones = [_tone(0.4, f, 0) for f in (200, 900)]
    wav = torch.from_numpy(np.stack(tones))[:, None]
    latent = torch.zeros(2, 8, 5)
    latent[0, 0], latent[1, 1] = 1.0, 1.0
    opt = torch.optim.Adam(head.parameters(), 1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = head(latent, wav)
        loss.backward()
        opt.step()
    target = head.target(wav)[..., :40]
    constant = (target - target.mean(dim=(0, 2), keepdim=True)).abs().mean()
    assert float(loss.detach()) < 0.5 * float(constant)


def test_run_logs_it_resumes_exactly_and_exports_the_released_layout(corpus, tmp_path):
    config = _config(corpus, "run.json", 15.0)
    base = ["train", "codec", "-c", str(config), "--quiet"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert CliRunner().invoke(main, [*base, "-o", str(straight)]).exit_code == 0
    assert CliRunner().invoke(main, [*base, "-o", str(resumed), "--steps", "2"]).exit_code == 0
    result = CliRunner().invoke(main, [*base, "-o", str(resumed)])
    assert result.exit_code == 0, result.output
    a, b = read_log(straight), read_log(resumed)
    assert a[1]["latent_mel"] > 0 and a[4]["latent_mel"] != a[1]["latent_mel"]
    for step in (3, 4):
        assert b[step]["latent_mel"] == pytest.approx(a[step]["latent_mel"], rel=1e-6)
        assert b[step]["total"] == pytest.approx(a[step]["total"], rel=1e-6)
    keys = CheckpointFolder(straight / "model").keys()
    assert keys and not any("latent" in k and "head" in k for k in keys)
    assert all(k.startswith(("encoder.", "decoder.")) for k in keys)
    Codec.from_pretrained(straight / "model")  # loads as any exported codec


def test_refusals_are_one_line(corpus, tmp_path):
    # A decoder fine-tune keeps the encoder frozen: the loss would train nothing.
    plain = _config(corpus, "plain.json", 0.0)
    run = tmp_path / "plain"
    assert (
        CliRunner().invoke(main, ["train", "codec", "-c", str(plain), "-o", str(run)]).exit_code
        == 0
    )
    bad = _config(corpus, "ft.json", 1.0)
    args = ["train", "codec", "-c", str(bad), "-o", str(tmp_path / "ft"), "--quiet"]
    result = CliRunner().invoke(main, [*args, "--finetune", str(run / "model")])
    assert result.exit_code != 0 and "keeps frozen" in result.output
    assert len(result.output.strip().splitlines()) == 1
    # A run made without the head does not resume with it.
    args = ["train", "codec", "-c", str(bad), "-o", str(run), "--steps", "6", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "trained without loss.latent_mel" in result.output
    assert len(result.output.strip().splitlines()) == 1
