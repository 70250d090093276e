"""The recogniser loss of codec training: resampling, the frozen encoder, the trainer's use."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from omnispeech.audio.features import log_mel_spectrogram
from omnispeech.errors import ConfigError
from omnispeech.training import CodecTrainConfig
from omnispeech.training.recognizer_loss import RecognizerLoss, Resampler
from omnispeech.training.trainer import CodecTrainer

TINY_MODEL = {
    "num_codebooks": 2,
    "codebook_size": 16,
    "encoder_filters": 4,
    "encoder_dim": 16,
    "encoder_layers": 1,
    "encoder_heads": 2,
    "decoder_hidden": 16,
    "decoder_layers": 1,
    "decoder_heads": 2,
    "decoder_latent": 16,
    "decoder_dim": 16,
}


def _tone(freq: float, rate: int, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(round(seconds * rate), dtype=torch.float64) / rate
    return torch.sin(2 * torch.pi * freq * t).float()[None]


def test_resampler_keeps_speech_band_and_removes_what_would_alias():
    down = Resampler(24000, 16000)
    out = down(_tone(1000, 24000))
    assert out.shape == (1, 8000)
    want = _tone(1000, 16000)
    mid = slice(500, -500)  # away from the zero-padded ends
    assert torch.allclose(out[:, mid], want[:, mid], atol=2e-3)
    # 10 kHz cannot exist at 16 kHz; unfiltered it would fold to 6 kHz at full level.
    alias = down(_tone(10000, 24000))[:, mid]
    assert alias.abs().max() < 0.01
    assert Resampler(16000, 16000)(want) is want


def test_recognizer_loss_is_zero_for_the_original_and_trains_only_the_audio(tiny_asr_dir):
    # Features made under inference mode first (as transcription does) must not leave cached
    # constants that gradients cannot pass through.
    from omnispeech.audio.features import _torch_constants

    _torch_constants.cache_clear()
    with torch.inference_mode():
        log_mel_spectrogram(torch.randn(1600))
    loss = RecognizerLoss(tiny_asr_dir, 24000).train()
    assert not loss.encoder.training
    real = _tone(220, 24000, 1.0).repeat(2, 1) * 0.5
    assert float(loss(real, real)) == pytest.approx(0.0, abs=1e-6)
    fake = (real + 0.05 * torch.randn_like(real)).requires_grad_(True)
    value = loss(fake, real)
    assert value.detach().item() > 0.01
    value.backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0
    assert all(p.grad is None for p in loss.encoder.parameters())


def _corpus(root):
    (root / "train").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        t = np.arange(24000) / 24000
        x = 0.3 * np.sin(2 * np.pi * (120 + 50 * i) * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(root / "train" / f"{i}.wav", x.astype(np.float32), 24000)


def _cfg(root, loss: dict, data: dict) -> CodecTrainConfig:
    path = root / "c.json"
    path.write_text(
        json.dumps(
            {
                "model": TINY_MODEL,
                "data": {"train": "train", "segment_seconds": 0.5, "batch_size": 2, **data},
                "loss": {"disc_start": 100, **loss},
                "run": {"steps": 2, "save_every": 2, "log_every": 1},
            }
        )
    )
    return CodecTrainConfig.from_file(path)


def test_trainer_adds_the_recognizer_loss_and_refuses_it_without_a_recognizer(
    tmp_path, tiny_asr_dir
):
    _corpus(tmp_path)
    with pytest.raises(ConfigError, match="data.recognizer"):
        CodecTrainer(_cfg(tmp_path, {"recognizer": 1.0}, {}), tmp_path / "a")
    # A relative folder is read beside the config file, as the data paths are.
    (tmp_path / "asr").symlink_to(tiny_asr_dir)
    cfg = _cfg(tmp_path, {"recognizer": 2.0}, {"recognizer": "asr"})
    assert cfg.data.recognizer == str(tmp_path / "asr")
    assert _cfg(tmp_path, {}, {"recognizer": "bundled"}).data.recognizer == "bundled"
    trainer = CodecTrainer(cfg, tmp_path / "b")
    before = [p.detach().clone() for p in trainer.codec.decoder.parameters() if p.requires_grad]
    losses = trainer.train_step()
    assert losses["recognizer"] > 0
    expected = 15.0 * losses["mel"] + losses["commitment"] + 2.0 * losses["recognizer"]
    assert losses["total"] == pytest.approx(expected, rel=1e-4)
    after = [p for p in trainer.codec.decoder.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    # Without the weight the recogniser is not even loaded, and its loss is logged as 0.
    plain = CodecTrainer(_cfg(tmp_path, {}, {"recognizer": "asr"}), tmp_path / "c")
    assert plain.recognizer is None
    assert plain.train_step()["recognizer"] == 0.0
