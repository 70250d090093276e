"""In-context prompts in TTS training (``data.in_context``): speakers reach the code cache,
references share speaker and language, batches stay reproducible and bounded, the training
inputs equal what the pipeline feeds for the same reference and text (dual track, both text
arrangements, and the single stream), and an export clones in context end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from omnispeech.errors import ConfigError, InputError
from omnispeech.pipelines import TTS, tts_loop
from omnispeech.pipelines.tts_prompt import VoicePrompt
from omnispeech.training.asr_data import read_transcribed
from omnispeech.training.tts_batch import IGNORE
from omnispeech.training.tts_config import TTSDataConfig
from omnispeech.training.tts_data import build_cache
from omnispeech.training.tts_trainer import TTSTrainer
from tests.test_tts_training import _config, _tone
from tests.tts_ref import short_guard, tiny_codec, tiny_tts

# (text, language, speaker): "a" has three English lines and one German (no German partner),
# "b" two English lines, and one line names no speaker.
ROWS = [
    ("open the file", "en", "espeak-a"),
    ("close the window", "en", "espeak-a"),
    ("save it now", "en", "espeak-a"),
    ("print the page", "en", "espeak-b"),
    ("open the door", "en", "espeak-b"),
    ("mach das fenster zu", "de", "espeak-a"),
    ("read the page", "en", ""),
]
PARTNERED = 5  # the English lines of a and b


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Tones of 1.2-1.5 s (long enough for an x-vector) with speakers, a tiny codec, and a
    tiny Qwen3-TTS folder whose speaker encoder gives the x-vectors."""
    root = tmp_path_factory.mktemp("tts_icl")
    lines = []
    for n, (text, language, speaker) in enumerate(ROWS):
        sf.write(root / f"u{n}.wav", _tone(1.2 + 0.05 * n, 110 + 15 * n, n), 24000)
        row = {"path": f"u{n}.wav", "text": text, "language": language, "split": "train"}
        if speaker:
            row["speaker"] = speaker
        lines.append(row)
    (root / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    tiny_codec(root / "codec")
    tiny_tts(root / "base")
    return root


def _icl_config(corpus: Path, arrangement: str, in_context: float = 1.0, **run):
    cfg = _config(corpus, **{"steps": 2, "save_every": 2, **run})
    return cfg.replace(
        model=cfg.model.replace(
            arrangement=arrangement,
            auto_language=0.0,
            speaker_encoder=str(corpus / "base"),
        ),
        data=cfg.data.replace(in_context=in_context, valid_split="train"),
    )


@pytest.fixture(scope="module")
def dual(corpus, tmp_path_factory) -> TTSTrainer:
    trainer = TTSTrainer(
        _icl_config(corpus, "dual"), tmp_path_factory.mktemp("dual"), progress=False
    )
    trainer.model.eval()
    return trainer


def test_manifest_speakers_reach_the_cache_and_older_caches_gain_them(corpus, tmp_path):
    items, skipped = read_transcribed(corpus / "manifest.jsonl")
    assert [u.speaker for u in items] == [r[2] for r in ROWS]
    cache = build_cache("train", items, skipped, corpus / "codec", tmp_path, progress=False)
    assert [u.speaker for u in cache.utterances] == [r[2] for r in ROWS]
    # A cache written before speakers were recorded: same fingerprint, so it is reused (not
    # encoded again) and takes the speakers from the manifest.
    index_file = tmp_path / "train.json"
    index = json.loads(index_file.read_text())
    for u in index["utterances"]:
        del u["speaker"]
    index_file.write_text(json.dumps(index))
    stamp = (tmp_path / "train.safetensors").stat().st_mtime_ns
    again = build_cache("train", items, skipped, corpus / "codec", tmp_path, progress=False)
    assert (tmp_path / "train.safetensors").stat().st_mtime_ns == stamp
    assert [u.speaker for u in again.utterances] == [r[2] for r in ROWS]
    with pytest.raises(ValueError, match="in_context"):
        TTSDataConfig(in_context=1.5)


def test_references_share_speaker_and_language_and_never_the_utterance_itself(dual, monkeypatch):
    batcher = dual.batcher
    utts = dual.train_cache.utterances
    assert len(batcher) == len(ROWS) and batcher.with_partner == PARTNERED
    rng = np.random.default_rng(0)
    drawn: dict[int, set[int]] = {}
    for i in batcher.usable:
        refs = [batcher.reference(i, rng) for _ in range(60)]
        if i < PARTNERED:
            assert None not in refs  # in_context = 1: every partnered utterance gets one
            drawn[i] = set(refs)
            for r in refs:
                assert r != i
                assert (utts[r].speaker, utts[r].language) == (utts[i].speaker, utts[i].language)
        else:  # the lonely German line and the line without a speaker
            assert refs == [None] * 60
    assert drawn[0] == {1, 2} and drawn[3] == {4}  # every partner is drawn
    monkeypatch.setattr(batcher, "in_context", 0.5)
    got = [batcher.reference(0, rng) for _ in range(400)]
    assert 120 < sum(r is not None for r in got) < 280


def test_speaker_vectors_from_other_clips_of_the_same_voice(dual, monkeypatch):
    """data.speaker_other_clip: without a reference, the slot holds another clip's x-vector
    of the same speaker and language; the arrangement of every sequence stays as it was."""
    batcher = dual.batcher
    speakers = dual.train_cache.speakers
    utts = dual.train_cache.utterances
    chosen = list(batcher.usable)
    none = [None] * len(chosen)
    plain = batcher.make(chosen, np.random.default_rng(5), none)
    assert torch.equal(plain.speakers, speakers[chosen])  # off: each clip's own vector
    monkeypatch.setattr(batcher, "other_clip", 1.0)
    seen: dict[int, set[int]] = {}
    for seed in range(40):
        batch = batcher.make(chosen, np.random.default_rng(seed), none)
        for b, i in enumerate(chosen):
            (row,) = [r for r in range(len(utts)) if torch.equal(speakers[r], batch.speakers[b])]
            seen.setdefault(i, set()).add(row)
        if seed == 5:
            assert torch.equal(batch.text_ids, plain.text_ids)
            assert torch.equal(batch.codec_ids, plain.codec_ids)
    for i, rows in seen.items():
        if i < PARTNERED:  # always another clip of the same voice and language
            assert i not in rows
            assert {(utts[r].speaker, utts[r].language) for r in rows} == {
                (utts[i].speaker, utts[i].language)
            }
        else:  # no partner: its own clip
            assert rows == {i}
    assert seen[0] == {1, 2}
    with pytest.raises(ValueError, match="speaker_other_clip"):
        TTSDataConfig(speaker_other_clip=1.5)


def test_batches_are_reproducible_bounded_and_learn_only_target_frames(dual):
    batcher = dual.batcher
    with_ref = 0
    for step in range(12):
        chosen, refs, _ = batcher.pick(0, step, 0)
        assert (chosen, refs) == batcher.pick(0, step, 0)[:2]  # a function of (seed, step, rank)
        costs = [batcher.positions(i, r) for i, r in zip(chosen, refs, strict=True)]
        assert len(chosen) == 1 or max(costs) * len(chosen) <= batcher.batch_positions
        batch = batcher.batch(0, step, 0)
        B, L = batch.text_ids.shape
        assert B == len(chosen) and L <= max(costs)  # the reference's positions are counted
        assert (batch.labels != IGNORE).sum() == batch.frames + B  # target frames + ends
        assert batch.frame_index.shape[0] == batch.frames
        assert batch.frames == sum(dual.train_cache.utterances[i].frames for i in chosen)
        # The speaker slot holds the reference's x-vector (the voice's clip).
        rows = [i if r is None else r for i, r in zip(chosen, refs, strict=True)]
        assert torch.equal(batch.speakers, dual.train_cache.speakers[rows])
        with_ref += sum(r is not None for r in refs)
    assert with_ref > 0


def _teacher_forced(monkeypatch, codes: torch.Tensor) -> None:
    """The pipeline 'samples' ``codes`` ``[K, N]`` frame by frame, then ends the speech."""
    made = iter(codes.T)

    def sample(self, allow_end: bool = True) -> torch.Tensor | None:
        frame = next(made, None)
        return None if frame is None else frame[None].clone()

    monkeypatch.setattr(tts_loop.Stepper, "sample", sample)


def _fed_and_trained(trainer: TTSTrainer, tts: TTS, monkeypatch, mode: str | None):
    """The vectors the pipeline feeds the talker for target 0 with reference 1 (same speaker),
    and the teacher-forced inputs of the training sequence the batcher makes for the pair."""
    batcher = trainer.batcher
    target, ref = 0, 1
    text = ROWS[target][0]
    assert tts.frontend.encode(text) == batcher.text_ids[target]
    cache = trainer.train_cache
    voice = VoicePrompt(
        speaker=cache.speakers[ref],
        ref_codes=cache.codes_of(ref),
        ref_text_ids=batcher.text_ids[ref],
    )
    _teacher_forced(monkeypatch, cache.codes_of(target))
    seen: list[torch.Tensor] = []
    hook = tts.talker.model.register_forward_pre_hook(lambda m, a: seen.append(a[0][0].clone()))
    options = {} if mode is None else {"arrangement": mode}
    try:
        with short_guard(monkeypatch, 100.0, 0.0):
            codes = tts.codes(text, voice, language="english", seed=0, **options)
    finally:
        hook.remove()
    assert torch.equal(codes, cache.codes_of(target))
    batch = batcher.make([target], np.random.default_rng(0), [ref])
    with torch.no_grad():
        x = trainer.model.embed(batch)[0]
    return torch.cat(seen), x, batch


@pytest.mark.parametrize("mode", ["stream", "full"])
def test_dual_training_inputs_equal_what_the_pipeline_feeds_in_context(
    dual, corpus, tmp_path, monkeypatch, mode
):
    """Prompt (control prefix, speaker slot, reference block) and every position after it, as
    the generation loop feeds them for the same reference and text, equal the training
    sequence vector for vector (up to the rounding of summing in another order)."""
    trainer = dual
    monkeypatch.setattr(trainer.batcher, "text_modes", [mode])
    tts = TTS.from_pretrained(trainer.export(tmp_path / "model"))
    fed, x, batch = _fed_and_trained(trainer, tts, monkeypatch, mode)
    assert fed.shape == x.shape
    torch.testing.assert_close(fed, x, rtol=1e-6, atol=1e-5)
    # The reference frames carry no target; the first target frame is predicted at the last
    # reference position, right where the prompt ends.
    N = trainer.train_cache.utterances[0].frames
    first = int(batch.frame_index[0])
    assert first == fed.shape[0] - N - 1
    assert (batch.labels[0, :first] == IGNORE).all()
    assert batch.labels[0, first] == trainer.train_cache.codes_of(0)[0, 0]
    assert (batch.labels[0] != IGNORE).sum() == N + 1


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory) -> tuple[TTSTrainer, TTS]:
    """A tiny single-stream talker trained two steps with in-context references, exported."""
    trainer = TTSTrainer(
        _icl_config(corpus, "single"), tmp_path_factory.mktemp("single"), progress=False
    )
    assert trainer.batcher.with_partner == PARTNERED and trainer.batcher.unfit == 0
    folder = trainer.fit(progress=False)
    trainer.model.eval()
    return trainer, TTS.from_pretrained(folder)


def test_single_stream_training_inputs_equal_what_the_pipeline_feeds_in_context(
    single, monkeypatch
):
    trainer, tts = single
    N = trainer.train_cache.utterances[0].frames
    n = len(trainer.batcher.text_ids[0])
    # The decode-time rate that training's even durations of this utterance follow.
    monkeypatch.setattr(tts, "single", tts.single.replace(frames_per_token=N / n))
    fed, x, batch = _fed_and_trained(trainer, tts, monkeypatch, None)
    assert fed.shape == x.shape
    torch.testing.assert_close(fed, x, rtol=1e-6, atol=1e-5)
    # Prefix, the reference's stream (its tokens, TEXT_END and R frames), the target's stream.
    R, m = trainer.train_cache.utterances[1].frames, len(trainer.batcher.text_ids[1])
    prefix = len(trainer.batcher.role_ids) + 4 + 1 + 1  # control, speaker slot, codec_pad
    assert x.shape[0] == prefix + (m + 1 + R) + (n + 1 + N)
    assert (batch.labels[0, : prefix + m + 1 + R] == IGNORE).all()
    assert (batch.labels[0] != IGNORE).sum() == N + 1


def test_single_stream_export_clones_in_context_end_to_end(single, corpus, monkeypatch):
    _, tts = single
    voice = tts.voice(corpus / "u1.wav", ROWS[1][0])
    assert voice.in_context and voice.ref_codes.shape[0] == 16
    with short_guard(monkeypatch, 0.8, 0.0):
        codes = tts.codes("save it now", voice, language="english", seed=0)
        wav = tts.synthesize("save it now", voice, language="english", seed=0)
    assert codes.shape[0] == 16 and codes.shape[1] >= 1
    # The reference's audio is cut: the speech of the generated frames only.
    hop = tts.codec.decoder.hop_length
    assert wav.ndim == 1 and wav.size == codes.shape[1] * hop and np.isfinite(wav).all()
    # A transcript too long for its clip has no reference stream: one clear error.
    short = VoicePrompt(voice.speaker, voice.ref_codes[:, :2], voice.ref_text_ids * 20)
    with pytest.raises(InputError, match="longer clip"):
        tts.codes("save it now", short, language="english", seed=0)


def test_resume_is_exact_with_references_and_a_lone_speaker_set_is_refused(corpus, tmp_path):
    cfg = _icl_config(corpus, "dual", 0.5, steps=4, save_every=2)
    whole = TTSTrainer(cfg, tmp_path / "a", progress=False)
    whole.fit(progress=False)
    part = TTSTrainer(cfg, tmp_path / "b", progress=False)
    part.fit(steps=2, progress=False)
    resumed = TTSTrainer(cfg, tmp_path / "b", progress=False)
    resumed.fit(progress=False)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert resumed.step == 4 and all(torch.equal(a[k], b[k]) for k in a)
    logs = [
        [json.loads(x) for x in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        for run in ("a", "b")
    ]
    valid = [[r["valid_talker"] for r in log if "valid_talker" in r] for log in logs]
    assert valid[0] == valid[1] and len(valid[0]) == 2  # validation: seeded by index
    lone = cfg.replace(data=cfg.data.replace(languages=("de",)))
    with pytest.raises(ConfigError, match="in_context"):
        TTSTrainer(lone, tmp_path / "c", progress=False)
    lone = lone.replace(data=lone.data.replace(in_context=0.0, speaker_other_clip=1.0))
    with pytest.raises(ConfigError, match="speaker_other_clip"):
        TTSTrainer(lone, tmp_path / "d", progress=False)
