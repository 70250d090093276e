"""Joint CTC/attention decoding: prefix probabilities against brute force, the choices it
makes, and the pipeline paths (single, batch, streaming, saved folders) that use it."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from omnispeech.errors import CheckpointError, InputError
from omnispeech.pipelines import ASR
from omnispeech.pipelines.asr_joint import DEFAULT_CTC_WEIGHT, CTCPrefixScorer, JointDecoder

SR = 16000


def _random_log_probs(steps: int, labels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(steps, labels + 1)) * 1.5
    return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)


def _collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    out = []
    prev = None
    for p in path:
        if p != prev and p != blank:
            out.append(p)
        prev = p
    return tuple(out)


def _brute(log_probs: np.ndarray) -> dict[tuple[int, ...], float]:
    """Probability of every labelling: the sum over the CTC paths that collapse to it."""
    T, C = log_probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(C), repeat=T):
        p = float(np.exp(log_probs[np.arange(T), list(path)].sum()))
        key = _collapse(path, C - 1)
        totals[key] = totals.get(key, 0.0) + p
    return totals


def test_prefix_probabilities_equal_brute_force_sums():
    lp = _random_log_probs(steps=5, labels=3, seed=0)
    exact = _brute(lp)

    def prefix_prob(h: tuple[int, ...]) -> float:
        return sum(p for seq, p in exact.items() if seq[: len(h)] == h)

    scorer = CTCPrefixScorer(lp)
    assert scorer.end() == pytest.approx(np.log(exact[()]))
    # Extend along 1, 1, 2: a repeated label is scored through a blank between the two.
    prefix: tuple[int, ...] = ()
    for label in (1, 1, 2):
        got = scorer.extensions([0, 1, 2])
        for c in range(3):
            assert np.exp(got[c]) == pytest.approx(prefix_prob((*prefix, c)), rel=1e-9)
        scorer.advance(label)
        prefix = (*prefix, label)
        assert np.exp(scorer.score) == pytest.approx(prefix_prob(prefix), rel=1e-9)
        assert np.exp(scorer.end()) == pytest.approx(exact.get(prefix, 0.0), rel=1e-9, abs=1e-300)
    # A label not among the last candidates is scored on its own.
    other = CTCPrefixScorer(lp)
    other.advance(2)
    assert np.exp(other.score) == pytest.approx(prefix_prob((2,)), rel=1e-9)


def _peaked(labels: list[int], classes: int, sure: float = 0.96) -> np.ndarray:
    probs = np.full((len(labels), classes), (1 - sure) / (classes - 1))
    probs[np.arange(len(labels)), labels] = sure
    return np.log(probs)


def test_ctc_stops_a_decoder_that_repeats_itself():
    # Vocabulary 0..5, blank 6, end-of-answer 5. The audio says "2 3"; the decoder's
    # logits always prefer 2 (a loop), with 3 next and the end well behind.
    blank, eos = 6, {5}
    lp = _peaked([blank, 2, 2, blank, 3, blank, blank], classes=7, sure=0.99)
    logits = torch.tensor([0.0, 0.0, 3.0, 2.0, 0.0, 0.0])
    joint = JointDecoder(lp, weight=0.5, marker=None, in_text=True)
    answer = []
    for _ in range(6):
        token = joint.choose(logits, eos)
        if token in eos:
            break
        answer.append(token)
    assert answer == [2, 3]
    # The decoder alone would have said 2 forever; with ends disallowed the choice is a label.
    joint = JointDecoder(lp, weight=0.5, marker=None, in_text=True)
    assert all(joint.choose(logits, eos, allow_end=False) != 5 for _ in range(4))


def test_header_before_the_marker_is_the_decoders_alone():
    blank, eos, marker = 6, {5}, 4
    lp = _peaked([blank, 1, blank], classes=7)
    joint = JointDecoder(lp, weight=0.9, marker=marker, in_text=False)
    header = torch.tensor([0.0, 0.0, 0.0, 5.0, 0.0, 0.0])  # the decoder names "3" (a language)
    assert joint.choose(header, eos) == 3 and not joint.in_text
    to_marker = torch.tensor([0.0, 0.0, 0.0, 0.0, 5.0, 0.0])
    assert joint.choose(to_marker, eos) == marker and joint.in_text
    assert joint.ctc.last is None  # nothing of the header entered the CTC prefix
    flat = torch.zeros(6)
    assert joint.choose(flat, eos) == 1  # now the audio decides
    with pytest.raises(ValueError, match="weight"):
        JointDecoder(lp, weight=0.0, marker=None, in_text=True)


# -- the pipeline ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def joint_dir(tmp_path_factory, lively_asr):
    """The lively tiny model with a random CTC head, saved with a declared weight."""
    asr = ASR.from_pretrained(lively_asr[1])
    torch.manual_seed(0)
    head = torch.nn.Linear(asr.encoder.out_dim, asr.tokenizer.get_vocab_size() + 1)
    torch.nn.init.normal_(head.weight, std=2.0)
    asr.ctc_head = head
    asr.ctc_weight = 0.6
    folder = tmp_path_factory.mktemp("joint_asr")
    asr.save_pretrained(folder)
    return folder


def _noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def test_the_weight_round_trips_and_is_checked(joint_dir, lively_asr, tmp_path):
    assert json.loads((joint_dir / "config.json").read_text())["ctc_decoding_weight"] == 0.6
    asr = ASR.from_pretrained(joint_dir)
    assert asr.ctc_weight == 0.6
    assert ASR.from_pretrained(joint_dir, ctc_weight=0.0).ctc_weight == 0.0
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        asr.ctc_weight = 1.5
    released = ASR.from_pretrained(lively_asr[1])  # no CTC head: the decoder alone
    assert released.ctc_weight == 0.0
    with pytest.raises(InputError, match="no CTC head"):
        released.ctc_weight = 0.3
    # A folder with a head that declares nothing gets the default.
    cfg = json.loads((joint_dir / "config.json").read_text())
    del cfg["ctc_decoding_weight"]
    (joint_dir / "config.json").write_text(json.dumps(cfg))
    try:
        assert ASR.from_pretrained(joint_dir).ctc_weight == DEFAULT_CTC_WEIGHT
        cfg["ctc_decoding_weight"] = "high"
        (joint_dir / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(CheckpointError, match="ctc_decoding_weight"):
            ASR.from_pretrained(joint_dir)
    finally:
        cfg["ctc_decoding_weight"] = 0.6
        (joint_dir / "config.json").write_text(json.dumps(cfg))


def test_joint_decoding_changes_answers_and_batch_equals_single(joint_dir):
    asr = ASR.from_pretrained(joint_dir)
    alone = ASR.from_pretrained(joint_dir, ctc_weight=0.0)
    wavs = [_noise(s, seed) for seed, s in enumerate((2.3, 4.1, 3.0))]
    for language in (None, "en"):
        joint = [asr.transcribe(w, language=language) for w in wavs]
        plain = [alone.transcribe(w, language=language) for w in wavs]
        if language is not None:
            # A random CTC head disagrees with the decoder: at least one answer differs. (A
            # detected language leaves the tiny model's answers alone: it never writes the
            # <asr_text> marker, and the header before it is the decoder's.)
            assert any(j.token_ids != p.token_ids for j, p in zip(joint, plain, strict=True))
        batch = asr.transcribe_batch(wavs, language=language)
        assert [b.token_ids for b in batch] == [j.token_ids for j in joint]
        assert [b.token_ids for b in alone.transcribe_batch(wavs, language=language)] == [
            p.token_ids for p in plain
        ]


@pytest.mark.parametrize("language", [None, "en"])
def test_streaming_final_answer_equals_offline_joint_decoding(joint_dir, language):
    asr = ASR.from_pretrained(joint_dir)
    wav = _noise(17.5, seed=3)
    with asr.stream(language=language, unfixed_tokens=None) as live:
        for i in range(0, wav.shape[0], SR // 2):
            live.push(wav[i : i + SR // 2])
        final = live.finish()
    offline = asr.transcribe(wav, language=language)
    assert final.text == offline.text
    assert list(offline.token_ids) == live._answer
