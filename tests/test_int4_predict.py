"""The code predictor's frame in one kernel call (``omnispeech.kernels.numba_int4_predict``)
against the predictor run step by step: the same codes from the same seed, the same sum of
embeddings, the generator left in the same state; and it steps aside wherever it does not
apply."""

from __future__ import annotations

import copy

import pytest
import torch

import omnispeech.talker.code_predictor as code_predictor
from omnispeech.core.quant import blocks_kernel, quantize_linears_
from omnispeech.core.sampling import SamplingConfig
from omnispeech.kernels import use_backend
from omnispeech.talker.code_predictor import CodePredictor
from omnispeech.talker.config import CodePredictorConfig
from omnispeech.talker.fused_predict import fused_predict

pytestmark = pytest.mark.skipif(
    blocks_kernel() is None, reason="our int4 kernel needs an x86 CPU with AVX2 and Numba"
)

# 2 layers, 4 query heads of 32 over 2 kv heads, an MLP of 320 (5 groups: odd, see the layer
# kernel's tests), 96 codes per codebook, 5 codebooks (4 residual draws per frame).
CFG = CodePredictorConfig(
    vocab_size=96,
    hidden_size=128,
    intermediate_size=320,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=32,
    num_code_groups=5,
    input_size=128,
)

SAMPLINGS = {
    "greedy": SamplingConfig(do_sample=False),
    "top-k": SamplingConfig(temperature=0.9, top_k=10),
    "all-codes": SamplingConfig(temperature=1.3, top_k=0),
    "k-over-vocab": SamplingConfig(temperature=0.7, top_k=500),
}


def _predictor(cfg: CodePredictorConfig = CFG, bits: int | None = 4) -> CodePredictor:
    torch.manual_seed(0)
    predictor = CodePredictor(cfg).eval()
    with torch.no_grad():
        for p in predictor.parameters():
            p.normal_(0.0, 0.1)
        for layer in predictor.model.layers:  # norms near one, as trained ones are
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight.add_(1.0)
        predictor.model.norm.weight.add_(1.0)
    if bits is not None:
        quantize_linears_(predictor, torch.float32, (), bits=bits)
    return predictor


def _inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, CFG.input_size, generator=g), torch.randn(1, CFG.input_size, generator=g)


@pytest.mark.parametrize("name", list(SAMPLINGS))
@torch.inference_mode()
def test_the_fused_frame_equals_the_step_by_step_predictor(name, int4_width, monkeypatch):
    """Six frames per setting: identical codes from the same seed, the same embedding sum,
    and the generators in the same state afterwards (the noise is drawn as ``multinomial``
    draws it, in the same order)."""
    sampling = SAMPLINGS[name]
    fused = _predictor()
    stepwise = copy.deepcopy(fused)
    served = []
    for seed in range(6):
        hidden, code0 = _inputs(seed)
        g_fused, g_step = (torch.Generator().manual_seed(seed) for _ in range(2))
        got = fused_predict(fused, hidden, code0, sampling, g_fused)
        served.append(got is not None)
        with monkeypatch.context() as mp:
            mp.setattr(code_predictor, "fused_predict", lambda *a: None)
            want = stepwise.predict(hidden, code0, sampling, g_step)
        assert got is not None
        assert torch.equal(got[0], want[0]), (seed, got[0], want[0])
        torch.testing.assert_close(got[1], want[1], rtol=1e-6, atol=1e-6)
        assert torch.equal(g_fused.get_state(), g_step.get_state())
    assert all(served)


@torch.inference_mode()
def test_predict_takes_the_fused_frame_and_keeps_the_cache_consistent(monkeypatch):
    """``predict`` answers through the kernel (same result as calling it directly), and its
    cache ends holding the frame's K positions, as the step-by-step path leaves it."""
    predictor = _predictor()
    hidden, code0 = _inputs(3)
    sampling = SAMPLINGS["top-k"]
    direct = fused_predict(copy.deepcopy(predictor), hidden, code0, sampling, [torch.Generator()])
    answers = []

    def recording(*args):
        answers.append(fused_predict(*args))
        return answers[-1]

    monkeypatch.setattr(code_predictor, "fused_predict", recording)
    codes, _ = predictor.predict(hidden, code0, sampling, torch.Generator())
    assert len(answers) == 1 and answers[0] is not None  # the kernel served it
    assert direct is not None
    assert torch.equal(codes, direct[0])
    assert predictor._cache is not None
    assert predictor._cache.length == CFG.num_code_groups


@torch.inference_mode()
def test_frames_it_does_not_serve_go_step_by_step():
    """Two streams, top-p, a float or bfloat16 predictor, an input projection, the reference
    backend, generators that are not one stream's: the fused frame answers None and touches
    no cache; ``predict`` still answers (or says what is wrong)."""
    predictor = _predictor()
    hidden, code0 = _inputs(0)
    top_k = SAMPLINGS["top-k"]
    assert fused_predict(predictor, hidden.expand(2, -1), code0.expand(2, -1), top_k, None) is None
    top_p = SamplingConfig(top_k=10, top_p=0.8)
    assert fused_predict(predictor, hidden, code0, top_p, None) is None
    assert fused_predict(_predictor(bits=None), hidden, code0, top_k, None) is None
    bf16 = _predictor(bits=None).to(torch.bfloat16)
    quantize_linears_(bf16, torch.bfloat16, (), bits=4)
    assert fused_predict(bf16, hidden.bfloat16(), code0.bfloat16(), top_k, None) is None
    projected = _predictor(CodePredictorConfig(**{**CFG.to_dict(), "input_size": 192}))
    x192 = torch.randn(1, 192)
    assert fused_predict(projected, x192, x192, top_k, None) is None
    with use_backend("reference"):
        assert fused_predict(predictor, hidden, code0, top_k, None) is None
    two = [torch.Generator(), torch.Generator()]
    assert fused_predict(predictor, hidden, code0, top_k, two) is None
    assert predictor._cache is None  # nothing above reserved or wrote a cache
    with pytest.raises(ValueError, match="2 generators for 1 rows"):
        predictor.predict(hidden, code0, top_k, two)
    codes, _ = predictor.predict(hidden.expand(2, -1), code0.expand(2, -1), top_k, None)
    assert codes.shape == (2, CFG.num_code_groups - 1)
