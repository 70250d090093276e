"""TTS training with the phoneme front end and single streams that follow word alignments:
transcript words, tokens to words (BPE offsets, IPA words), word times from espeak-ng and from
a CTC head, token first frames, and runs that train, export and speak."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from omnispeech.errors import ConfigError
from omnispeech.interleave import ItemKind, build_single_stream
from omnispeech.pipelines import TTS
from omnispeech.pipelines.tts_frontend import PhonemeFrontend
from omnispeech.training.tts_align import (
    SEPARATOR,
    WordTime,
    bpe_token_words,
    build_word_times,
    espeak_word_times,
    phoneme_token_words,
    token_frames,
    word_spans,
)
from omnispeech.training.tts_config import TTSModelConfig
from omnispeech.training.tts_data import CachedUtterance, train_text_tokenizer
from omnispeech.training.tts_trainer import TTSTrainer
from tests.test_tts_training import TEXTS, _config, corpus  # noqa: F401 - the shared fixture
from tests.tts_ref import needs_espeak, short_guard

TEXT = "Smith bought 42 apples, e.g. red ones."


def _words(text: str) -> list[str]:
    return [text[a:b] for a, b in word_spans(text)]


def test_words_are_trimmed_of_punctuation_and_unspaced_scripts_split_per_character():
    assert _words(TEXT) == ["Smith", "bought", "42", "apples", "e.g", "red", "ones"]
    assert _words('"Hi" -- twenty-one, 你好。ok') == ["Hi", "twenty-one", "你", "好", "ok"]
    assert word_spans("... !") == []


def _check_frames(frames: list[int], n_frames: int) -> None:
    assert all(0 <= f < n_frames for f in frames)
    assert all(a <= b for a, b in zip(frames, frames[1:], strict=False))


def test_token_frames_spread_each_word_and_give_separators_the_end_before():
    words = [WordTime(0, 3, 0, 4), WordTime(4, 8, 4, 10), WordTime(9, 12, 12, 20)]
    owners = [0, 0, SEPARATOR, 1, 1, 1, SEPARATOR, SEPARATOR, 2, 2, SEPARATOR]
    frames = token_frames(owners, words, 20)
    _check_frames(frames, 20)
    # Word 0: 2 tokens over [0, 4); word 1: 3 over [4, 10); word 2: 2 over [12, 20).
    assert frames == [0, 2, 4, 4, 6, 8, 10, 10, 12, 16, 19]  # last: 20 clamped to N - 1
    # A separator before any word starts at 0; overlapping words never go back in time.
    assert token_frames([SEPARATOR, 0, 1], [WordTime(0, 1, 5, 9), WordTime(2, 3, 3, 4)], 12) == [
        0,
        5,
        5,
    ]


def test_bpe_tokens_belong_to_the_word_their_characters_are_in():
    tok = train_text_tokenizer([TEXT, "open the file", "bought apples"] * 5, 300)
    spans = word_spans(TEXT)
    ids, owners = bpe_token_words(tok, TEXT, spans)
    assert ids == tok.encode(TEXT, add_special_tokens=False).ids
    pieces = {w: "" for w in range(len(spans))}
    for i, w in zip(ids, owners, strict=True):
        if w == SEPARATOR:
            assert tok.decode([i]).strip() in {"", ",", ".", ". "}, tok.decode([i])
        else:
            pieces[w] += tok.decode([i])
    # Each word's tokens spell the word (BPE tokens carry their leading space).
    assert [pieces[w].strip() for w in pieces] == _words(TEXT)
    frames = token_frames(owners, [WordTime(a, b, 3 * w, 3 * w + 3) for w, (a, b) in
                                   enumerate(spans)], 21)  # fmt: skip
    _check_frames(frames, 21)
    firsts = [owners.index(w) for w in range(len(spans))]
    assert [frames[k] for k in firsts] == [3 * w for w in range(len(spans))]


@needs_espeak
def test_phoneme_tokens_follow_the_ipa_words_of_each_transcript_word():
    fe = PhonemeFrontend()
    spans = word_spans(TEXT)
    ids, owners = phoneme_token_words(fe, TEXT, "en", spans)
    assert ids == fe.encode(TEXT, "en") and len(owners) == len(ids)
    spelled = {w: [] for w in range(len(spans))}
    for i, w in zip(ids, owners, strict=True):
        if w != SEPARATOR:
            spelled[w].append(i)
    # "42" is read as two IPA words ("forty two"); its tokens are exactly those phonemes.
    forty_two = fe.phonemes("42", "en")
    assert len(forty_two.split()) == 2
    assert fe.tokenizer.decode(spelled[2]) == forty_two.replace(" ", "")
    assert fe.tokenizer.decode(spelled[0]) == fe.phonemes("Smith", "en")
    assert fe.tokenizer.decode(spelled[3]) == fe.phonemes("apples", "en")
    # "e.g." in running text is one IPA word, "for example".
    assert fe.tokenizer.decode(spelled[4]) == fe.phonemes("e.g. red", "en").split()[0]
    # Separators are the spaces and clause marks, nothing else.
    assert {fe.tokenizer.decode([i]) for i, w in zip(ids, owners, strict=True)
            if w == SEPARATOR} <= {" ", ",", "."}  # fmt: skip
    words = [WordTime(a, b, 4 * w, 4 * w + 4) for w, (a, b) in enumerate(spans)]
    frames = token_frames(owners, words, 28)
    _check_frames(frames, 28)
    assert [frames[owners.index(w)] for w in range(len(spans))] == [4 * w for w in range(7)]


@needs_espeak
def test_espeak_word_times_scale_to_the_frame_count():
    from omnispeech.pipelines.espeak_speech import EspeakLibrary

    speaker = EspeakLibrary()
    # Select the voice first: espeak-ng 1.51 may drop the first word event after a change.
    speaker.speak("Hello.", "en-us")
    wav, spoken = speaker.speak(TEXT, "en-us")
    assert spoken[0].offset == 0 and TEXT[spoken[1].offset :].startswith("bought")
    seconds = len(wav) / speaker.sample_rate
    for n_frames in (40, 80):
        words = espeak_word_times(speaker, TEXT, "en-us", n_frames)
        assert [TEXT[w.first : w.last] for w in words] == _words(TEXT)
        starts = [w.start for w in words]
        assert starts[0] == 0 and words[-1].end == n_frames
        assert starts == sorted(starts) and len(set(starts)) == len(starts)  # words in order
        assert all(w.start <= w.end <= n_frames for w in words)
        bought = next(s for s in spoken if s.text == "bought")
        assert starts[1] == round(bought.start / seconds * n_frames)


def test_asr_word_times_and_the_fallback_for_text_too_long(ctc_asr_dir, tmp_path):
    t = np.arange(16000 * 2) / 16000
    sf.write(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    text = "open the file now"
    long = " ".join(["word"] * 80)  # more tokens than a 2 s clip has CTC steps
    utts = [
        CachedUtterance(text, "en", 0, 25, str(tmp_path / "a.wav")),
        CachedUtterance(long, "en", 25, 25, str(tmp_path / "a.wav")),
    ]
    folder = tmp_path / "cache"
    times = build_word_times("train", utts, "asr", folder, str(ctc_asr_dir), 12.5, progress=False)
    assert times.fallback == 1 and times.words[1] is None
    words = times.words[0]
    assert words is not None and [text[w.first : w.last] for w in words] == text.split()
    assert all(0 <= w.start <= w.end <= 25 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    stamp = (folder / "train.words.json").stat().st_mtime_ns
    again = build_word_times("train", utts, "asr", folder, str(ctc_asr_dir), 12.5, progress=False)
    assert again.words == times.words and (folder / "train.words.json").stat().st_mtime_ns == stamp


def test_aligned_single_stream_differs_from_the_even_one_and_keeps_its_invariants():
    policy = TTSModelConfig(arrangement="single").single_policy()
    tokens = list(range(100, 108))
    even = build_single_stream(tokens, 30, policy)
    words = [WordTime(0, 1, 0, 6), WordTime(2, 3, 6, 8), WordTime(4, 5, 8, 30)]
    aligned_at = token_frames([0, 0, 0, SEPARATOR, 1, SEPARATOR, 2, 2], words, 30)
    aligned = build_single_stream(tokens, 30, policy, aligned_at)
    assert aligned.positions != even.positions
    for stream in (even, aligned):
        text = [p.text for p in stream.positions if not p.is_speech]
        assert [x.token for x in text if x.kind is ItemKind.TOKEN] == tokens
        assert text[-1].kind is ItemKind.TEXT_END
        assert [p.frame for p in stream.positions if p.is_speech] == list(range(30))
        assert all(policy.lo <= d <= policy.hi for d in stream.durations)
    # Never late where the bounds allow (k * lo <= a[k] here): each token starts by its frame.
    assert all(k * policy.lo <= a for k, a in enumerate(aligned_at))
    assert all(f <= a for f, a in zip(aligned.starts, aligned_at, strict=False))


@needs_espeak
def test_phoneme_run_trains_exports_and_speaks(corpus, tmp_path, monkeypatch):  # noqa: F811
    rows = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines()]
    rows = [{**r, "path": str(corpus / r["path"])} for r in rows]
    odd = {**rows[0], "language": "yo"}  # a language espeak-ng has no voice for
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in [*rows, odd]))
    cfg = _config(corpus, steps=3, save_every=3)
    data = cfg.data.replace(train=str(manifest), text_frontend="espeak-ipa", alignment="espeak")
    cfg = cfg.replace(data=data)
    trainer = TTSTrainer(cfg, tmp_path / "run", progress=False)
    # The dual track ignores alignments: nothing is aligned.
    assert trainer.batcher.alignment(0) is None
    assert not (tmp_path / "run" / "cache" / "train.words.json").exists()
    assert trainer.skipped["no_phonemes"] == 1 and trainer.languages == ["en"]
    fe = trainer.frontend
    assert isinstance(fe, PhonemeFrontend) and not (tmp_path / "run" / "tokenizer.json").exists()
    assert trainer.model.talker.spec.talker.text_vocab_size == fe.vocab_size
    u = trainer.train_cache.utterances[0]
    assert trainer.batcher.text_ids[0] == fe.encode(u.text, "en")
    assert trainer.batcher.role_ids == fe.role_ids
    assert (tmp_path / "run" / "cache" / "train.phonemes.json").is_file()
    folder = trainer.fit(progress=False)
    assert (folder / "text_frontend.json").is_file()
    tts = TTS.from_pretrained(folder)
    assert isinstance(tts.frontend, PhonemeFrontend)
    tts.frontend.check(tts.talker.spec.tokens)
    with short_guard(monkeypatch, 0.4, 0.0):
        wav = tts.synthesize("save it", language="english", seed=0)
    assert wav.ndim == 1 and wav.size > 0 and np.isfinite(wav).all()
    only_yo = tmp_path / "yo.jsonl"
    only_yo.write_text(json.dumps(odd) + "\n")
    with pytest.raises(ConfigError, match="espeak-ng speaks none"):
        TTSTrainer(cfg.replace(data=cfg.data.replace(train=str(only_yo), valid="")),
                   tmp_path / "yo", progress=False)  # fmt: skip


@needs_espeak
@pytest.mark.parametrize("frontend", ["bpe", "espeak-ipa"])
def test_single_stream_batches_follow_espeak_alignments(corpus, tmp_path, frontend):  # noqa: F811
    cfg = _config(corpus, steps=1)
    cfg = cfg.replace(
        model=cfg.model.replace(arrangement="single", auto_language=0.0),
        data=cfg.data.replace(text_frontend=frontend, alignment="espeak", valid=""),
    )
    trainer = TTSTrainer(cfg, tmp_path / "run", progress=False)
    batcher = trainer.batcher
    assert trainer.aligned_evenly == 0 and batcher.alignments is not None
    assert (tmp_path / "run" / "cache" / "train.words.json").is_file()
    for i, u in enumerate(trainer.train_cache.utterances):
        a = batcher.alignments[i]
        assert a is not None and len(a) == len(batcher.text_ids[i]) and a[0] == 0
        _check_frames(a, u.frames)
        assert a[-1] > u.frames // 2  # the last word starts in the second half
    chosen = list(batcher.usable)
    aligned = batcher.make(chosen, np.random.default_rng(0))
    batcher.alignments = None
    even = batcher.make(chosen, np.random.default_rng(0))
    assert not torch.equal(aligned.text_ids, even.text_ids)
    # Same frames, same targets, only the text items move.
    assert aligned.frames == even.frames and torch.equal(aligned.frame_codes, even.frame_codes)
    assert torch.equal(aligned.labels.sort(dim=1).values, even.labels.sort(dim=1).values)
    assert trainer.train_step()["talker"] > 0
