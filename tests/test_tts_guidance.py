"""Classifier-free guidance of single-stream talkers: training arranges unconditioned sequences
(text tokens read as tts_pad, no speaker vector) at the positions of the conditioned ones, the
guided loop feeds exactly those two sequences, codebook 0 is drawn from the guided logits, and
the setting travels through generation_config.json, the API and both CLIs with clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from omnispeech.cli import main
from omnispeech.errors import CheckpointError, ConfigError, InputError
from omnispeech.pipelines import TTS
from omnispeech.pipelines.tts_generation import check_guidance, read_generation, write_generation
from omnispeech.pipelines.tts_prompt import VoicePrompt, language_tag
from omnispeech.pipelines.tts_single import ARRANGEMENT_KEY, GUIDANCE_KEY, read_guidance_dropout
from omnispeech.talker import GenerationConfig
from omnispeech.training.tts_batch import arrange_single
from omnispeech.training.tts_config import TTSDataConfig, TTSSamplingConfig
from omnispeech.training.tts_trainer import TTSTrainer
from tests import test_tts_single as single
from tests.test_tts_training import _config
from tests.tts_ref import short_guard

TEXTS = single.TEXTS


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """test_tts_single's tiny talker, trained two steps with half its sequences unconditioned,
    and its export."""
    return single.train_single(tmp_path_factory.mktemp("guided"), guidance_dropout=0.5)


@pytest.fixture(scope="module")
def trainer(trained):
    trained[0].model.eval()
    return trained[0]


@pytest.fixture(scope="module")
def tts(trained):
    return TTS.from_pretrained(trained[1])


def test_unconditioned_arrangement_blanks_only_the_text_tokens(trainer):
    batcher = trainer.batcher
    ids = batcher.ids
    text = batcher.text_ids[0]
    codes = batcher.cache.codes_of(0)
    parts = (text, codes, ids, batcher.role_ids, None, True, batcher.single)
    cond = arrange_single(*parts)
    blank = arrange_single(*parts, unconditioned=True)
    # Same positions, targets and speaker slot: only what the text track reads differs.
    assert (blank.codec, blank.labels, blank.frame_at) == (cond.codec, cond.labels, cond.frame_at)
    assert blank.speaker_at == cond.speaker_at >= 0
    changed = [i for i, (a, b) in enumerate(zip(cond.text, blank.text, strict=True)) if a != b]
    assert len(changed) == len(text)  # every token, once
    assert [cond.text[i] for i in changed] == list(text)
    assert all(blank.text[i] == ids.tts_pad for i in changed)
    assert cond.text.count(ids.tts_eos) == blank.text.count(ids.tts_eos) == 1  # TEXT_END stays


def test_batcher_drops_text_and_voice_together(trainer, monkeypatch):
    batcher = trainer.batcher
    n = len(batcher.cache.utterances)
    monkeypatch.setattr(batcher.cache, "speakers", torch.ones(n, 8))
    kinds = set()
    for step in range(12):
        chosen, refs, _ = batcher.pick(0, step, 0)
        monkeypatch.setattr(batcher, "guidance_dropout", 0.0)
        plain = batcher.make(chosen, np.random.default_rng(step), refs)
        monkeypatch.setattr(batcher, "guidance_dropout", 0.5)
        dropped = batcher.make(chosen, np.random.default_rng(step), refs)
        assert torch.equal(plain.labels, dropped.labels)
        assert torch.equal(plain.codec_ids, dropped.codec_ids)
        for b in range(len(chosen)):
            blanked = not torch.equal(plain.text_ids[b], dropped.text_ids[b])
            assert torch.equal(dropped.speakers[b], torch.zeros(8) if blanked else torch.ones(8))
            kinds.add(blanked)
    assert kinds == {True, False}  # both kinds drawn at 0.5


def test_guided_loop_feeds_both_training_sequences(trainer, tts, monkeypatch):
    """The conditioned copy is the training sequence of the text and voice, the unconditioned
    copy that of arrange_single(unconditioned=True) with a zero speaker vector."""
    batcher = trainer.batcher
    text_ids = batcher.text_ids[1]
    n = len(text_ids)
    N = 3 * n + 1
    monkeypatch.setattr(tts, "single", tts.single.replace(frames_per_token=N / n))
    hidden = tts.talker.spec.talker.hidden_size
    voice = VoicePrompt(speaker=torch.randn(hidden, generator=torch.Generator().manual_seed(0)))
    seen: list[torch.Tensor] = []
    hook = tts.talker.model.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    generation = tts.generation.replace(min_frames=10**6, guidance=2.5)
    try:
        with short_guard(monkeypatch, N / 12.5 - 0.001, 0.0):
            codes = tts.codes(TEXTS[1], voice, language="english", seed=4, generation=generation)
    finally:
        hook.remove()
    assert codes.shape == (16, N)
    fed = torch.cat(seen, dim=1)  # [2, positions, hidden]
    assert fed.shape[0] == 2
    ids = tts.talker.spec.tokens
    tag = language_tag(tts.talker, "english", None)
    for copy, speaker in enumerate((voice.speaker, torch.zeros(hidden))):
        seq = arrange_single(
            text_ids, codes, ids, batcher.role_ids, tag, True, tts.single, unconditioned=bool(copy)
        )
        x = single.embed_sequence(trainer, seq, codes, speaker)
        torch.testing.assert_close(fed[copy], x, rtol=1e-6, atol=1e-5)


def test_codebook_0_comes_from_the_guided_logits(tts):
    talker = tts.talker
    prompt = torch.randn(
        2, 6, talker.spec.talker.hidden_size, generator=torch.Generator().manual_seed(1)
    )
    for scale in (1.5, 4.0):
        state = talker.start(prompt, 16)
        with torch.no_grad():
            logits = talker.codec_head(state.hidden).float()
        guided = logits[1] + scale * (logits[0] - logits[1])
        guided[talker.suppress] = float("-inf")
        gen = GenerationConfig.greedy().replace(min_frames=0, guidance=scale)
        codes = talker.sample_frame(state, gen)
        assert codes.shape == (2, 16) and torch.equal(codes[0], codes[1])
        assert int(codes[0, 0]) == int(guided.argmax())
    with pytest.raises(ValueError, match="even"):
        talker.sample_frame(talker.start(prompt[:1], 16), gen)


def test_guidance_changes_the_speech_and_one_is_none(tts, monkeypatch):
    with short_guard(monkeypatch, 0.8, 0.0):
        plain = tts.codes(TEXTS[0], language="english", seed=3)
        one = tts.codes(TEXTS[0], language="english", seed=3, generation=tts.generation)
        strong = tts.codes(
            TEXTS[0], language="english", seed=3, generation=tts.generation.replace(guidance=8.0)
        )
    assert torch.equal(plain, one)
    assert plain.shape != strong.shape or not torch.equal(plain, strong)


def test_guidance_settings_and_their_errors(tts, trained, tmp_path):
    path = tmp_path / "generation_config.json"
    write_generation(path, GenerationConfig())
    assert "guidance" not in json.loads(path.read_text())  # the released keys only
    write_generation(path, GenerationConfig(guidance=2.5))
    assert read_generation(path).guidance == 2.5
    with pytest.raises(ValueError, match="guidance"):
        GenerationConfig(guidance=0.5)
    with pytest.raises(ValueError, match="guidance_dropout"):
        TTSDataConfig(guidance_dropout=1.0)
    with pytest.raises(ValueError, match="guidance"):
        TTSSamplingConfig(guidance=30.0)
    assert check_guidance(3, True) == 3.0
    with pytest.raises(InputError, match="never learnt"):
        check_guidance(2.0, False)
    with pytest.raises(InputError, match="between 1"):
        check_guidance(0.0, True)
    # The export records what the talker learnt; only then is guidance allowed.
    assert tts.guidance_dropout == 0.5
    assert (
        json.loads((trained[1] / "config.json").read_text())[ARRANGEMENT_KEY][GUIDANCE_KEY] == 0.5
    )
    plain = TTS(tts.talker, tts.codec, tts.frontend, generation=tts.generation, single=tts.single)
    dual = TTS(tts.talker, tts.codec, tts.frontend, generation=tts.generation, guidance_dropout=0.5)
    for model in (plain, dual):
        assert model.guidance_dropout == 0
        with pytest.raises(InputError, match="never learnt"):
            model.set_guidance(2.0)
        with pytest.raises(InputError, match="never learnt"):
            model.codes("open", generation=GenerationConfig(guidance=2.0))
    fresh = TTS.from_pretrained(trained[1])
    fresh.set_guidance(2.0)
    assert fresh.generation.guidance == 2.0
    fresh.save_pretrained(tmp_path / "again")
    again = TTS.from_pretrained(tmp_path / "again")
    assert (again.guidance_dropout, again.generation.guidance) == (0.5, 2.0)
    with pytest.raises(CheckpointError, match="guidance_dropout"):
        read_guidance_dropout({ARRANGEMENT_KEY: {"kind": "single", GUIDANCE_KEY: 1.5}})


def test_trainer_refuses_guidance_it_cannot_learn(tmp_path):
    cfg = _config(tmp_path, steps=1, save_every=1)
    with pytest.raises(ConfigError, match='arrangement "single"'):
        TTSTrainer(cfg.replace(data=cfg.data.replace(guidance_dropout=0.1)), tmp_path / "r")
    single = cfg.replace(model=cfg.model.replace(arrangement="single"))
    with pytest.raises(ConfigError, match="guidance_dropout"):
        TTSTrainer(single.replace(sampling=single.sampling.replace(guidance=2.0)), tmp_path / "r")


def test_cli_guidance_option(trained, tmp_path):
    out = tmp_path / "x.wav"
    runner = CliRunner()
    bad = runner.invoke(main, ["tts", "hello", "-o", str(out), "--guidance", "0.5"])
    assert bad.exit_code != 0 and bad.output.count("\n") == 1
    assert "--guidance must lie between 1" in bad.output
    assert not out.exists()
    args = ["eval", "tts", str(tmp_path), str(tmp_path / "m.jsonl"), "--guidance", "2"]
    loose = runner.invoke(main, args)
    assert loose.exit_code != 0 and "go with --synthesize" in loose.output
