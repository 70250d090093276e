"""Many TTS requests at once: each request's codes and audio equal those it gets alone
(different texts, voices and seeds, utterances of different lengths, several rounds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnispeech.errors import InputError
from omnispeech.pipelines import TTS
from tests.tts_ref import short_guard, tiny_tts

RATE = 24000
TEXTS = [
    "Hello there.",
    "The cat sat on the mat, and then it ran far away!",
    "Yes. No. Maybe so, said the small grey owl to the moon.",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_tts(tmp_path_factory.mktemp("tts"))


@pytest.fixture(scope="module")
def tts(folder):
    return TTS.from_pretrained(folder)


@pytest.fixture(autouse=True)
def _short_guard(monkeypatch):
    # Random weights never end speech by themselves: a short duration guard (as in
    # test_tts.py) bounds each utterance at a length that still differs per text.
    with short_guard(monkeypatch, 0.5, 0.16):
        yield


@pytest.fixture(scope="module")
def voices(tts):
    t = np.arange(int(2.5 * RATE)) / RATE
    clip = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )
    in_context = tts.voice(clip, "a short clip", sample_rate=RATE)
    x_vector = tts.voice(clip, sample_rate=RATE)
    return [None, in_context, x_vector]


def test_batch_codes_and_audio_equal_each_alone(tts, voices):
    """Sampling on, a seed per request; prompts of different lengths (no voice, in-context
    clone, x-vector clone) and utterances cut at different lengths."""
    seeds = [11, 22, 33]
    got = tts.codes_batch(TEXTS, voices, seeds)
    assert tts.last_seeds == seeds
    want = [tts.codes(t, v, seed=s) for t, v, s in zip(TEXTS, voices, seeds, strict=True)]
    assert len({w.shape[1] for w in want}) == 3  # three different lengths
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    audio = tts.synthesize_batch(TEXTS[:2], voices[:2], seeds[:2])
    alone = tts.synthesize(TEXTS[1], voices[1], seed=seeds[1])
    assert np.array_equal(audio[1], alone)
    # the same request in two rows with different seeds: different speech
    twins = tts.codes_batch([TEXTS[0], TEXTS[0]], seeds=[1, 2])
    assert not torch.equal(twins[0], twins[1])


def test_batch_over_several_utterances(folder):
    """Texts split into 1, 2 and 3 utterances: the batch runs in rounds, and each request's
    generator carries over between its utterances as when alone."""
    tts = TTS.from_pretrained(folder)
    tts.max_segment_tokens = 8
    texts = ["Hi.", "One two three four. Five six seven.", "Ten. Eleven twelve. Thirteen now!"]
    got = tts.codes_batch(texts, seeds=[5, 6, 7])
    for text, seed, g in zip(texts, [5, 6, 7], got, strict=True):
        assert torch.equal(g, tts.codes(text, seed=seed))


class _SometimesEndingHead(torch.nn.Module):
    """The codec head with end-of-speech as likely as the best code: sampled streams end at
    frames that depend on their own seeds."""

    def __init__(self, head: torch.nn.Module, eos: int) -> None:
        super().__init__()
        self.head, self.eos, self.weight = head, eos, head.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(x)
        logits[..., self.eos] = logits.amax(-1)
        return logits


def test_streams_ending_at_different_frames(folder):
    """A stream that chooses end-of-speech leaves the batch without drawing residual codes,
    so the others (and its own next utterance) go on exactly as alone."""
    tts = TTS.from_pretrained(folder)
    tts.max_segment_tokens = 8
    eos = tts.talker.spec.tokens.codec_eos
    tts.talker.codec_head = _SometimesEndingHead(tts.talker.codec_head, eos)
    texts = ["One two three four. Five six seven."] * 4
    seeds = [1, 2, 3, 4]
    got = tts.codes_batch(texts, seeds=seeds)
    want = [tts.codes(t, seed=s) for t, s in zip(texts, seeds, strict=True)]
    assert len({w.shape[1] for w in want}) > 1
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)


def test_batch_bad_input(tts):
    with pytest.raises(InputError, match="voices"):
        tts.codes_batch(TEXTS, voices=[None])
    with pytest.raises(InputError, match="seeds="):
        tts.codes_batch(TEXTS, seed=3)
    with pytest.raises(InputError, match="empty"):
        tts.codes_batch(["Hi.", "  "])
    assert tts.codes_batch([]) == []
