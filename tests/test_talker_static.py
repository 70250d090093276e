"""The fixed-shape frame step (graph-capturable) equals the reference loop, for the dense
Qwen3-TTS talker and the Qwen3-Omni talker with its mixture of experts."""

from __future__ import annotations

import pytest
import torch

from omnispeech.core.sampling import SamplingConfig, apply_repetition_penalty, warp
from omnispeech.errors import InputError
from omnispeech.talker import GenerationConfig, Talker
from omnispeech.talker.moe import SharedExpertMoE
from omnispeech.talker.static import StaticSession, gumbel_pick
from tests.conftest import redraw
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


@pytest.fixture(scope="module")
def omni(tmp_path_factory):
    from tests.tiny import tiny_omni_model

    folder = tmp_path_factory.mktemp("omni")
    tiny_omni_model(audio_output=True, talker_layers=2).save_pretrained(folder)
    talker = Talker.from_pretrained(folder)
    # Larger weights than transformers' init: the routers then pick distinct experts with
    # unequal weights per token, and the experts' outputs move the codes.
    redraw(talker, std=0.3)
    return talker


def _steps(talker: Talker, static: bool, texts: torch.Tensor, gen: GenerationConfig):
    """Codes ``[n, 1, K]`` of ``len(texts)`` frames and the last hidden state, end-of-speech
    suppressed (the fixed-shape step never reads ``allow_end``)."""
    prompt = _prompt(talker, seed=1)
    talker.suppress[talker.spec.tokens.codec_eos] = True
    try:
        with torch.inference_mode():
            state = talker.start(prompt, 64)
            session = StaticSession(talker, state, gen) if static else None
            codes = []
            for text in texts:
                if session is None:
                    codes.append(talker.sample_frame(state, gen))
                    talker.advance(state, codes[-1], text)
                else:
                    codes.append(session.sample().clone())
                    session.text.copy_(text)
                    session.advance()
            hidden = state.hidden if session is None else session.hidden
    finally:
        talker.suppress[talker.spec.tokens.codec_eos] = False
    return torch.stack(codes), hidden


def test_moe_talker_static_step_equals_reference_loop(omni):
    """The Qwen3-Omni talker (experts routed per token) on the fixed-shape step: the same
    greedy codes as the reference loop, and the same state to float32 rounding."""
    texts = torch.randn(
        12, 1, omni.spec.talker.hidden_size, generator=torch.Generator().manual_seed(2)
    )
    want, want_hidden = _steps(omni, False, texts, GenerationConfig.greedy())
    got, got_hidden = _steps(omni, True, texts, GenerationConfig.greedy())
    assert len({tuple(c[0, :1].tolist()) for c in want}) > 1  # the frames differ
    assert torch.equal(got, want)
    torch.testing.assert_close(got_hidden, want_hidden, rtol=1e-5, atol=1e-5)


def test_fixed_experts_equal_routed_experts_and_keep_one_copy_of_the_weights():
    torch.manual_seed(0)
    moe = SharedExpertMoE(
        32, num_experts=6, top_k=2, expert_size=16, shared_size=24, norm_topk_prob=True
    )
    keys = sorted(moe.state_dict())
    x = torch.randn(3, 2, 32)
    with torch.no_grad():
        torch.testing.assert_close(moe.fixed(x), moe(x), rtol=1e-6, atol=1e-6)
        gate, _, down = moe.stacked()
        # Each expert's parameter is a view of the stack: one copy, the same state dict.
        assert moe.experts[4].gate_proj.weight.data_ptr() == gate[4].data_ptr()
        assert (
            moe.experts[2].down_proj.weight.untyped_storage().data_ptr()
            == down.untyped_storage().data_ptr()
        )
        assert sorted(moe.state_dict()) == keys
        # Loading weights writes through the views; moving the module re-stacks on next use.
        other = SharedExpertMoE(32, 6, 2, 16, 24, True)
        moe.load_state_dict(other.state_dict())
        torch.testing.assert_close(moe.fixed(x), other(x), rtol=1e-6, atol=1e-6)
        moe.double()
        torch.testing.assert_close(moe.fixed(x.double()), other.double()(x.double()))


def test_quantized_experts_are_refused(omni):
    import copy

    from omnispeech.core.quant import quantize_linears_

    quantized = copy.deepcopy(omni)
    quantize_linears_(quantized, torch.float32, ())
    state = quantized.start(_prompt(quantized), 16)
    with pytest.raises(InputError, match="float"):
        StaticSession(quantized, state, GenerationConfig())


@pytest.mark.requires_cuda
@pytest.mark.parametrize("kind", ["dense", "moe"])
def test_cuda_graph_replays_equal_eager_static_steps(kind, talker, omni):
    """Sampled frames replayed as CUDA graphs equal the eager fixed-shape step with the same
    noise, for the dense and the mixture-of-experts talker."""
    from omnispeech.talker.graph import GraphSession

    talker = talker if kind == "dense" else omni
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
