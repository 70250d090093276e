"""Sampling equals the transformers logits processors the released models were run with."""

from __future__ import annotations

import pytest
import torch

from omnispeech.core.sampling import SamplingConfig, apply_repetition_penalty, sample, warp


def test_repetition_penalty_matches_transformers():
    from transformers import RepetitionPenaltyLogitsProcessor

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50, generator=g)
    history = torch.randint(0, 50, (3, 7), generator=g)
    want = RepetitionPenaltyLogitsProcessor(1.05)(history, logits.clone())
    assert torch.allclose(apply_repetition_penalty(logits, history, 1.05), want)


@pytest.mark.parametrize(
    "top_k, top_p, temperature", [(50, 1.0, 0.9), (5, 0.8, 1.0), (0, 0.5, 0.7)]
)
def test_warpers_match_transformers(top_k, top_p, temperature):
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 300, generator=g) * 3
    ids = torch.zeros(4, 1, dtype=torch.long)
    want = TemperatureLogitsWarper(temperature)(ids, logits.clone())
    if top_k:
        want = TopKLogitsWarper(top_k)(ids, want)
    if top_p < 1.0:
        want = TopPLogitsWarper(top_p)(ids, want)
    cfg = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    got = warp(logits, cfg)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    finite = torch.isfinite(want)
    assert torch.allclose(got[finite], want[finite])


def test_sampling_is_seeded_and_respects_suppression():
    logits = torch.randn(2, 100, generator=torch.Generator().manual_seed(2))
    suppress = torch.zeros(100, dtype=torch.bool)
    suppress[logits[0].argmax()] = True
    cfg = SamplingConfig(top_k=0, temperature=5.0)
    a = [sample(logits, cfg, torch.Generator().manual_seed(7), suppress=suppress) for _ in range(3)]
    assert all(torch.equal(a[0], x) for x in a)
    draws = torch.stack(
        [
            sample(logits, cfg, torch.Generator().manual_seed(s), suppress=suppress)
            for s in range(200)
        ]
    )
    assert not (draws[:, 0] == logits[0].argmax()).any()
    assert len(set(draws[:, 0].tolist())) > 10  # a real draw, not the arg-max
    greedy = sample(logits, cfg.greedy, suppress=suppress)
    assert greedy[1] == logits[1].argmax()


def test_bad_settings_are_refused():
    for bad in ({"temperature": 0}, {"top_k": -1}, {"top_p": 0.0}, {"repetition_penalty": 0}):
        with pytest.raises(ValueError):
            SamplingConfig(**bad)


def test_generation_config_round_trips_through_json(tmp_path):
    import json

    from omnispeech.talker import GenerationConfig

    cfg = GenerationConfig.greedy()
    path = tmp_path / "gen.json"
    cfg.to_json(path)
    assert GenerationConfig.from_dict(json.loads(path.read_text())) == cfg


def test_top_k_draws_among_the_candidates_with_their_probabilities():
    """The top-k draw reads the k candidates alone: it never leaves them, each comes as often
    as the masked distribution says, suppression holds, and per-row generators give each row
    what it draws alone."""
    logits = torch.randn(2, 300, generator=torch.Generator().manual_seed(3))
    cfg = SamplingConfig(top_k=5, temperature=0.7)
    suppress = torch.zeros(300, dtype=torch.bool)
    suppress[logits[1].argmax()] = True
    n = 4000
    draws = torch.stack(
        [sample(logits, cfg, torch.Generator().manual_seed(s), suppress=suppress) for s in range(n)]
    )
    for row in range(2):
        masked = logits[row].masked_fill(suppress, float("-inf"))[None]
        expected = warp(masked, cfg).softmax(dim=-1)[0]
        assert set(draws[:, row].tolist()) <= set(torch.topk(masked, 5).indices[0].tolist())
        freq = torch.bincount(draws[:, row], minlength=300).float() / n
        assert (freq - expected).abs().max() < 0.03  # about 4 standard deviations
    alone = [sample(logits[i : i + 1], cfg, torch.Generator().manual_seed(9)) for i in range(2)]
    both = sample(logits, cfg, [torch.Generator().manual_seed(9) for _ in range(2)])
    assert torch.equal(both, torch.cat(alone))
