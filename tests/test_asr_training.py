"""ASR training: manifests with bad entries, tokenizer, batches, masked encoder, augmentation,
exact resume under torchrun, and an export that loads like a released Qwen3-ASR folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from omnispeech.errors import ConfigError
from omnispeech.pipelines import ASR
from omnispeech.pipelines.asr_joint import DEFAULT_CTC_WEIGHT
from omnispeech.testing import read_log, torchrun_train
from omnispeech.training.asr_data import (
    SPECIAL_TOKENS,
    ASRBatcher,
    read_transcribed,
    tokenizer_texts,
    train_tokenizer,
)
from omnispeech.training.augment import (
    AugmentConfig,
    add_noise,
    augment,
    change_speed,
    shift_pitch,
    telephone,
)

TINY = json.loads((Path(__file__).parents[1] / "recipes" / "asr" / "tiny.json").read_text())
TEXTS = {
    "en": ["open the file", "close the window now", "save it", "print the page please"],
    "de": ["öffne die Datei", "schließe das Fenster", "speichere es jetzt"],
}


def _tone(seconds: float, f0: float, seed: int) -> np.ndarray:
    t = np.arange(round(seconds * 16000)) / 16000
    x = sum(0.2 / k * np.sin(2 * np.pi * k * f0 * t) for k in (1, 2, 3))
    return (x + 0.01 * np.random.default_rng(seed).standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A manifest of tones standing in for speech: train and dev lines, plus one line whose
    file is missing and one whose file is not audio."""
    root = tmp_path_factory.mktemp("asr_corpus")
    lines = []
    n = 0
    for lang, texts in TEXTS.items():
        for text in texts:
            for split in ("train", "train", "dev"):
                path = root / f"{lang}{n}.wav"
                sf.write(path, _tone(0.6 + 0.1 * len(text) / 4, 100 + 13 * n, n), 16000)
                lines.append({"path": path.name, "text": text, "language": lang, "split": split})
                n += 1
    (root / "broken.wav").write_bytes(b"not audio at all")
    lines.append({"path": "broken.wav", "text": "x y", "language": "en", "split": "train"})
    lines.append({"path": "gone.wav", "text": "x y", "language": "en", "split": "train"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


def test_manifest_skips_missing_and_corrupt_files_and_counts_them(corpus):
    train, skipped = read_transcribed(corpus / "manifest.jsonl", "train")
    assert len(train) == 2 * 7 and dict(skipped) == {"missing": 1, "unreadable": 1}
    dev, _ = read_transcribed(corpus / "manifest.jsonl", "dev", languages=["de"])
    assert len(dev) == 3 and {u.language for u in dev} == {"de"}


def test_empty_manifest_and_no_usable_lines_are_one_error(tmp_path, corpus):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no usable utterances"):
        read_transcribed(empty)
    bad = tmp_path / "bad.jsonl"
    lines = (corpus / "manifest.jsonl").read_text().splitlines()[-2:]
    bad.write_text("".join(f"{x}\n" for x in lines).replace('"broken', f'"{corpus}/broken'))
    with pytest.raises(ConfigError, match="skipped: missing 1, unreadable 1"):
        read_transcribed(bad)
    config = tmp_path / "c.json"
    config.write_text(json.dumps(TINY))
    cmd = [sys.executable, "-m", "omnispeech", "train", "asr", "-c", str(config)]
    done = subprocess.run(
        [*cmd, "--train", str(empty), "-o", str(tmp_path / "o")], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "no usable utterances" in done.stderr


def test_tokenizer_has_the_prompt_tokens_and_encodes_any_text(corpus):
    train, _ = read_transcribed(corpus / "manifest.jsonl", "train")
    tok = train_tokenizer(tokenizer_texts(train, ["de", "en"]), 400)
    assert 300 < tok.get_vocab_size() <= 400  # fewer when the text has no more merges
    for special in SPECIAL_TOKENS:
        assert tok.token_to_id(special) is not None
    for text in ("schließe das Fenster", "Ελληνικά κείμενο", "日本語のテキスト"):
        assert tok.decode(tok.encode(text).ids) == text  # unseen scripts fall back to bytes
    # The answer prefix of a training language is a few merged tokens, not letters.
    assert len(tok.encode("language German").ids) <= 3


def test_batches_depend_only_on_seed_step_rank(corpus):
    train, _ = read_transcribed(corpus / "manifest.jsonl", "train")
    tok = train_tokenizer(tokenizer_texts(train, ["de", "en"]), 400)

    def batcher():
        return ASRBatcher(train, tok, AugmentConfig(), 3.0, 4, 7, lambda n: -(-n // 8))

    a, b = batcher().batch(5, 0), batcher().batch(5, 0)
    assert torch.equal(a.features, b.features) and torch.equal(a.input_ids, b.input_ids)
    assert not torch.equal(batcher().batch(5, 1).features[0], a.features[0])
    # Targets: the answer after the prompt, then the end token; the audio placeholders match
    # the encoder's token count.
    end = tok.token_to_id("<|im_end|>")
    for i in range(a.input_ids.shape[0]):
        labels = a.labels[i][a.labels[i] != -100].tolist()
        text = tok.decode(labels, skip_special_tokens=False)
        assert text.startswith("language ") and "<asr_text>" in text and labels[-1] == end
        assert int(a.audio_mask[i].sum()) == -(-int(a.feature_lengths[i]) // 8)


def test_augmentations_do_what_they_say():
    rng = np.random.default_rng(0)
    wav = _tone(2.0, 200.0, 0)
    assert abs(change_speed(wav, 1.25).shape[0] - wav.shape[0] / 1.25) < 20
    shifted = shift_pitch(wav, 12.0)  # an octave up, same duration
    assert abs(shifted.shape[0] - wav.shape[0]) < 600
    freqs = np.fft.rfftfreq(shifted.shape[0], 1 / 16000)
    assert abs(freqs[np.argmax(np.abs(np.fft.rfft(shifted)))] - 400) < 10
    narrow = telephone(wav + 0.2 * np.sin(2 * np.pi * 6000 * np.arange(wav.size) / 16000))
    spec = np.abs(np.fft.rfft(narrow))
    f = np.fft.rfftfreq(narrow.size, 1 / 16000)
    assert spec[f > 4000].max() < 0.01 * spec.max()
    noise = rng.standard_normal(wav.size).astype(np.float32)
    mixed = add_noise(wav, noise, 10.0)
    snr = 10 * np.log10(np.mean(wav**2) / np.mean((mixed - wav) ** 2))
    assert abs(snr - 10.0) < 0.1
    for seed in range(10):
        out = augment(wav, np.random.default_rng(seed), AugmentConfig())
        assert np.isfinite(out).all() and np.abs(out).max() <= 1.0 and out.size > 0
    off = augment(wav, rng, AugmentConfig(enabled=False))
    assert off is wav


def test_augmentation_ramps_in_from_clean_speech(corpus):
    cfg = AugmentConfig(ramp_steps=100)
    assert cfg.at_step(0).p_noise == 0 and cfg.at_step(0).time_masks == 0
    assert cfg.at_step(50).p_noise == pytest.approx(cfg.p_noise / 2)
    assert cfg.at_step(100) == cfg and cfg.at_step(10_000) == cfg
    with pytest.raises(ValueError, match="ramp_steps"):
        AugmentConfig(ramp_steps=-1)
    # At step 0 of a ramp the batcher applies no effect and no mask (only the level is set).
    train, _ = read_transcribed(corpus / "manifest.jsonl", "train")
    tok = train_tokenizer(tokenizer_texts(train, ["de", "en"]), 400)

    def first(augment_cfg: AugmentConfig, step: int = 0) -> torch.Tensor:
        return (
            ASRBatcher(train, tok, augment_cfg, 3.0, 4, 7, lambda n: -(-n // 8))
            .batch(step, 0)
            .features
        )

    none = dict.fromkeys(
        ("p_speed", "p_pitch", "p_reverb", "p_noise", "p_telephone", "p_codec", "p_gain"), 0.0
    )
    clean = first(AugmentConfig(**none, time_masks=0, freq_masks=0))
    assert torch.equal(first(cfg), clean)
    assert not torch.equal(first(cfg, step=100), clean)


def test_two_process_training_resumes_exactly_and_exports_a_qwen3_asr_folder(corpus, tmp_path):
    cfg = {
        **TINY,
        "data": {**TINY["data"], "train": "manifest.jsonl", "valid": "manifest.jsonl"},
        "run": {"steps": 4, "save_every": 2, "log_every": 1},
    }
    config = corpus / "ddp.json"
    config.write_text(json.dumps(cfg))
    torchrun_train("asr", config, tmp_path / "straight", 4)
    torchrun_train("asr", config, tmp_path / "resumed", 2)  # stops at the step-2 checkpoint...
    torchrun_train("asr", config, tmp_path / "resumed", 4)  # ...and continues from it
    straight, resumed = read_log(tmp_path / "straight"), read_log(tmp_path / "resumed")
    assert sorted(straight) == sorted(resumed) == [1, 2, 3, 4]
    for step in (3, 4):
        for name in ("total", "attention", "ctc", "valid_cer"):
            if name in straight[step]:
                assert resumed[step][name] == pytest.approx(straight[step][name], rel=1e-6)
    assert straight[3]["total"] != straight[4]["total"]  # the losses do move
    assert "valid_cer" in straight[4]
    assert straight[4]["valid_ctc_weight"] == DEFAULT_CTC_WEIGHT  # decoded as the export is
    # The export is a Qwen3-ASR folder: the pipeline loads it like a released one, with the
    # CTC head, the training languages and the tokenizer.
    model = tmp_path / "resumed" / "model"
    config_json = json.loads((model / "config.json").read_text())
    assert config_json["model_type"] == "qwen3_asr"
    assert config_json["support_languages"] == ["German", "English"]
    assert config_json["ctc_decoding_weight"] == DEFAULT_CTC_WEIGHT
    asr = ASR.from_pretrained(model)
    assert asr.ctc_head is not None and asr.ctc_head.out_features == TINY["model"]["vocab_size"] + 1
    result = asr.transcribe(corpus / "en0.wav", language="en")
    assert result.language == "English"
    assert asr.transcribe(corpus / "de12.wav", language="German").language == "German"


def test_sigterm_saves_the_step_and_resume_matches_an_uninterrupted_run(corpus, tmp_path):
    import signal

    from omnispeech.training import ASRTrainConfig, ASRTrainer, Workers

    cfg = ASRTrainConfig.from_dict(
        {
            **TINY,
            "data": {**TINY["data"], "train": str(corpus / "manifest.jsonl")},
            "run": {"steps": 100, "save_every": 100, "log_every": 1},
        }
    )
    cpu = Workers(0, 1, torch.device("cpu"))
    stopped = ASRTrainer(cfg, tmp_path / "stopped", cpu)
    step = stopped.train_step

    def step_then_kill() -> dict[str, float]:
        out = step()
        if stopped.step == 2:  # as `kill` would, in the middle of the run
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    def escaped(signum, frame):  # the trainer's handler must take the signal, not this one
        raise RuntimeError("SIGTERM reached the caller: the trainer did not catch it")

    stopped.train_step = step_then_kill
    previous = signal.signal(signal.SIGTERM, escaped)
    try:
        stopped.fit(steps=4, progress=False)
        assert signal.getsignal(signal.SIGTERM) == escaped  # the handler is given back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.stopped_by == signal.SIGTERM and stopped.step == 2
    assert stopped.latest_checkpoint().name == "step-00000002.pt"

    resumed = ASRTrainer(cfg, tmp_path / "stopped", cpu)
    resumed.fit(steps=3, progress=False)
    straight = ASRTrainer(cfg, tmp_path / "straight", cpu)
    straight.fit(steps=3, progress=False)
    assert resumed.stopped_by is None and resumed.step == straight.step == 3
    expected = straight.model.state_dict()
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[key]), key
