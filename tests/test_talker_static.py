"""The fixed-shape frame step (graph-capturable) equals the reference loop."""

from __future__ import annotations

import pytest
import torch

from omnispeech.core.sampling import SamplingConfig, apply_repetition_penalty, warp
from omnispeech.errors import InputError
from omnispeech.talker import GenerationConfig, Talker
from omnispeech.talker.static import StaticSession, gumbel_pick
from tests.test_talker_parity import GOLDEN


@pytest.fixture(scope="module")
def talker():
    return Talker.from_pretrained(GOLDEN)


def _prompt(talker: Talker, length: int = 11, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, length, talker.spec.talker.hidden_size, generator=g)


def test_greedy_static_step_equals_reference_loop(talker):
    gen = GenerationConfig.greedy()
    prompt = _prompt(talker)
    texts = torch.randn(14, 1, talker.spec.talker.hidden_size)
    state = talker.start(prompt, 64)
    want = []
    for n in range(14):
        codes = talker.sample_frame(state, gen, allow_end=False)
        want.append(codes)
        talker.advance(state, codes, texts[n])
    # The same with the fixed-shape step (end-of-speech suppressed the same way).
    talker.suppress[talker.spec.tokens.codec_eos] = True
    try:
        with torch.inference_mode():
            session = StaticSession(talker, talker.start(prompt, 64), gen)
            got = []
            for n in range(14):
                got.append(session.sample().clone())
                session.text.copy_(texts[n])
                session.advance()
    finally:
        talker.suppress[talker.spec.tokens.codec_eos] = False
    assert torch.equal(torch.stack(got), torch.stack(want))


def test_penalty_mask_equals_history_form():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 40, generator=g)
    history = torch.randint(0, 40, (2, 9), generator=g)
    seen = torch.zeros(2, 40, dtype=torch.bool).scatter_(1, history, True)
    penalised = torch.where(logits < 0, logits * 1.3, logits / 1.3)
    assert torch.equal(
        torch.where(seen, penalised, logits), apply_repetition_penalty(logits, history, 1.3)
    )


def test_gumbel_pick_draws_from_the_warped_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]])
    cfg = SamplingConfig(temperature=0.9, top_k=4, top_p=0.95)
    want = warp(logits, cfg).softmax(-1)[0]
    g = torch.Generator().manual_seed(0)
    n = 20000
    noise = torch.rand(n, 6, generator=g)
    picks = gumbel_pick(logits.expand(n, -1), cfg, noise)
    freq = torch.bincount(picks, minlength=6).float() / n
    assert (freq - want).abs().max() < 0.015
    assert freq[want == 0].sum() == 0  # removed by top-k / top-p: never drawn
    assert torch.equal(gumbel_pick(logits, cfg.greedy, noise[:1]), torch.tensor([0]))


def test_moe_talkers_are_refused(tmp_path):
    from tests.tiny import tiny_omni_model

    tiny_omni_model(audio_output=True).save_pretrained(tmp_path)
    omni = Talker.from_pretrained(tmp_path)
    state = omni.start(torch.randn(1, 5, omni.spec.talker.hidden_size), 16)
    with pytest.raises(InputError, match="dense"):
        StaticSession(omni, state, GenerationConfig())


@pytest.mark.requires_cuda
def test_cuda_graph_replays_equal_eager_static_steps(talker):
    from omnispeech.talker.graph import GraphSession

    cuda = talker.to("cuda")
    gen = GenerationConfig()
    prompt = _prompt(cuda).cuda()
    texts = torch.randn(8, 1, cuda.spec.talker.hidden_size, device="cuda")
    with torch.inference_mode():
        eager = StaticSession(cuda, cuda.start(prompt, 64), gen)
        graph = GraphSession(cuda, cuda.start(prompt, 64), gen)
        for n in range(8):
            for s in (eager, graph):
                s.fill_noise(torch.Generator("cuda").manual_seed(n))
            assert torch.equal(graph.sample(), eager.sample())
            for s in (eager, graph):
                s.text.copy_(texts[n])
            assert torch.allclose(graph.advance(), eager.advance(), atol=1e-5)
    talker.to("cpu")
