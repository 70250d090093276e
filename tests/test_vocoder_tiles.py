"""The vocoder's tile plan: derived from the cache sizes, measured and kept per machine, and
never a change in the output."""

from __future__ import annotations

import json

import pytest
import torch

from omnispeech.vocoder import Code2Wav, Code2WavConfig
from omnispeech.vocoder.tiles import (
    TilePlan,
    coarse_hop,
    default_plan,
    derived_plan,
    fine_bytes_per_sample,
    measure_plan,
    plan_file,
    plan_key,
    store_plan,
    stored_plan,
)
from tests.vocoder_ref import redraw_vocoder

RELEASED = Code2WavConfig()  # the released shapes (Qwen3-Omni's code2wav)
TINY = Code2WavConfig(
    codebook_size=32,
    hidden_size=16,
    latent_dim=16,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=8,
    intermediate_size=32,
    num_hidden_layers=1,
    sliding_window=5,
    decoder_dim=32,
)


@pytest.fixture(autouse=True)
def own_plan_file(tmp_path, monkeypatch):
    """Every test keeps its measured plans in its own folder, never in the user's cache."""
    monkeypatch.setenv("OMNISPEECH_CACHE", str(tmp_path / "cache"))


def test_released_shapes_give_four_frames_on_2_mib_and_one_on_512_kib():
    assert coarse_hop(RELEASED) == 32
    # The last block's output: 96 channels x 60 samples per coarse sample x 4 bytes.
    assert fine_bytes_per_sample(RELEASED) == 96 * 60 * 4
    xeon = derived_plan(RELEASED, {"L1d": 48 << 10, "L2": 2 << 20})
    zen4 = derived_plan(RELEASED, {"L1d": 32 << 10, "L2": 1 << 20})
    epyc = derived_plan(RELEASED, {"L1d": 32 << 10, "L2": 512 << 10})
    assert (xeon.fine_samples, xeon.source) == (128, "caches")  # 4 frames, the measured best
    assert zen4.fine_samples == 64  # 2 frames, among the best measured there
    assert epyc.fine_samples == 32  # a smaller cache, a smaller tile
    # 16-bit activations take half the bytes, so the same cache holds twice the samples.
    assert derived_plan(RELEASED, {"L2": 512 << 10}, element_size=2).fine_samples == 64
    assert xeon.coarse_frames == zen4.coarse_frames == epyc.coarse_frames == 32


def test_unknown_caches_fall_back_and_tiny_caches_still_give_one_sample():
    fallback = derived_plan(RELEASED, {})
    assert (fallback.fine_samples, fallback.source) == (64, "fallback")
    assert derived_plan(RELEASED, {"L2": 1024}).fine_samples == 1
    with pytest.raises(ValueError, match=">= 1"):
        TilePlan(0, 4)


def test_measured_plans_are_kept_per_key_and_a_broken_file_is_ignored():
    path = plan_file()
    assert stored_plan("a") is None  # no file yet
    store_plan("a", TilePlan(16, 8, "measured"))
    store_plan("b", TilePlan(64, 32, "measured"))
    assert stored_plan("a") == TilePlan(16, 8, "measured")
    assert set(json.loads(path.read_text())) == {"a", "b"}
    path.write_text("{not json")
    assert stored_plan("a") is None
    store_plan("a", TilePlan(8, 4, "measured"))  # rewrites the broken file
    assert stored_plan("a") == TilePlan(8, 4, "measured")


def test_the_key_names_the_shape_and_the_dtype():
    assert plan_key(RELEASED, torch.float32) != plan_key(TINY, torch.float32)
    assert plan_key(RELEASED, torch.float32) != plan_key(RELEASED, torch.bfloat16)
    assert plan_key(RELEASED, torch.float32, threads=1) != plan_key(RELEASED, torch.float32, 2)


def test_measuring_picks_the_fastest_fine_then_coarse_tile():
    seen: list[TilePlan] = []

    def fake_decode(plan: TilePlan) -> float:
        seen.append(plan)
        return abs(plan.fine_samples - 16) + abs(plan.coarse_frames - 16) / 100

    plan = measure_plan(fake_decode, RELEASED, fine_frames=(0.25, 0.5, 1, 2), coarse_frames=(8, 16))
    assert plan == TilePlan(16, 16, "measured")
    assert len(seen) == 4 + 2  # fine candidates, then coarse candidates at the best fine


def test_tuning_stores_a_plan_that_later_vocoders_use_and_the_audio_stays_the_same():
    model = Code2Wav(TINY).eval()
    redraw_vocoder(model, seed=1)
    assert model.tiles.source in ("caches", "fallback")
    codes = torch.randint(0, 32, (1, 16, 9), generator=torch.Generator().manual_seed(0))
    before = model(codes)
    timed: list[TilePlan] = []
    plan = model.tune_tiles(frames=3, repeats=1, progress=lambda p, s: timed.append(p))
    assert plan.source == "measured" and model.tiles == plan and len(timed) == 9
    assert (model(codes) - before).abs().max() < 1e-6
    assert default_plan(TINY) == plan  # the same machine, shape and dtype
    assert Code2Wav(TINY).tiles == plan
    assert Code2Wav(TINY, coarse_frames=4, fine_frames=0.5).tiles == TilePlan(4, 16, "given")
    assert default_plan(TINY, torch.bfloat16).source != "measured"  # another dtype


def test_fine_frames_may_be_a_fraction_but_not_zero():
    model = Code2Wav(TINY)
    model.fine_frames = 0.25
    assert model.tiles.fine_samples == 8 and model.fine_frames == 0.25
    with pytest.raises(ValueError, match="positive"):
        model.fine_frames = 0
