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
