"""The one-call int4 decoder layer (``omnispeech.kernels.numba_int4_step``) against the same
layer run module by module: equal outputs and caches over many decoding steps, in both register
widths and with odd group counts; and it steps aside wherever it does not apply."""

from __future__ import annotations

import copy

import pytest
import torch

import omnispeech.core.transformer as transformer
from omnispeech.core.fused_step import fused_layer_step, fused_stack_step
from omnispeech.core.linear import project
from omnispeech.core.quant import blocks_kernel, quantize_linears_
from omnispeech.core.transformer import DecoderConfig, DecoderStack
from omnispeech.kernels import use_backend

kernel = blocks_kernel()
pytestmark = pytest.mark.skipif(
    kernel is None, reason="our int4 kernel needs an x86 CPU with AVX2 and Numba"
)

# hidden 256 / 4 heads of 64 (even group counts), and an MLP of 576 (9 groups: the AVX-512
# path reads groups in pairs and leaves odd counts to AVX2); 2 query heads per kv head.
CONFIGS = [
    DecoderConfig(
        hidden_size=256,
        intermediate_size=640,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=64,
    ),
    DecoderConfig(
        hidden_size=192,
        intermediate_size=576,
        num_layers=2,
        num_heads=6,
        num_kv_heads=3,
        head_dim=64,
    ),
]


def _stack(cfg: DecoderConfig, seed: int = 0) -> DecoderStack:
    torch.manual_seed(seed)
    stack = DecoderStack(cfg).eval()
    with torch.no_grad():
        for p in stack.parameters():
            p.normal_(0.0, 0.1)
        for layer in stack.layers:  # norms near one, as trained ones are
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight.add_(1.0)
    quantize_linears_(stack, torch.float32, (), bits=4)
    return stack


def _decode(stack: DecoderStack, prompt: torch.Tensor, steps: list[torch.Tensor], mode: str, mp):
    """Run the prompt and the steps with the whole-stack call ("stack"), the per-layer call
    alone ("layer") or neither ("module"); returns the hidden states, the cache and, per
    call of the fused function in use, whether it served the step."""
    calls = []

    def counting(fn):
        def wrapped(*args):
            out = fn(*args)
            calls.append(out is not None)
            return out

        return wrapped

    def off(*args):
        return None

    stack_fn = counting(fused_stack_step) if mode == "stack" else off
    mp.setattr(transformer, "fused_stack_step", stack_fn)
    mp.setattr(
        transformer, "fused_layer_step", counting(fused_layer_step) if mode == "layer" else off
    )
    cache = stack.new_cache(1, prompt.shape[1] + sum(s.shape[1] for s in steps) + 1)
    outs = [stack(prompt, cache)]
    for step in steps:
        outs.append(stack(step, cache))
    return torch.cat(outs, dim=1), cache, calls


@pytest.mark.parametrize("mode", ["layer", "stack"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=["even-groups", "odd-groups"])
@torch.inference_mode()
def test_fused_steps_equal_the_layer_by_layer_path(cfg, mode, int4_width, monkeypatch):
    """A prompt of 20 positions, then steps of 1, 2 and 16 positions (a frame; the code
    predictor's first step; a frame with its text): every hidden state and every cached key
    and value agree with the module path (the products are the same integer sums; norms,
    RoPE and softmax differ in summation order only), whether each layer is one call or the
    whole stack is."""
    stack = _stack(cfg)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randn(1, 20, cfg.hidden_size, generator=g)
    sizes = [1, 2, 1, 16, 3] + [1] * 6
    steps = [torch.randn(1, n, cfg.hidden_size, generator=g) for n in sizes]
    got, got_cache, calls = _decode(stack, prompt, steps, mode, monkeypatch)
    want, want_cache, _ = _decode(copy.deepcopy(stack), prompt, steps, "module", monkeypatch)
    # the prompt (over MAX_ROWS positions) runs module by module, every step in one call
    per_step = cfg.num_layers if mode == "layer" else 1
    assert calls == [False] * per_step + [True] * (len(sizes) * per_step)
    _assert_close_up_to_rounding(got, want)
    for a, b in zip(got_cache.layers, want_cache.layers, strict=True):
        assert a.length == b.length == 20 + sum(sizes)
        _assert_close_up_to_rounding(a.keys, b.keys)
        _assert_close_up_to_rounding(a.values, b.values)


@torch.inference_mode()
def test_a_stack_with_a_layer_the_kernel_cannot_run_goes_layer_by_layer():
    """One float layer among int4 ones: the whole-stack call steps aside (cache untouched),
    and the stack's forward still serves the int4 layers one call each."""
    cfg = CONFIGS[0]
    stack = _stack(cfg)
    stack.layers[1] = DecoderStack(cfg).layers[1].eval()
    x = torch.randn(1, 1, cfg.hidden_size)
    rope = stack.rotary(torch.zeros(1, 1, dtype=torch.long), torch.float32)
    cache = stack.new_cache(1, 4)
    assert fused_stack_step(stack.layers, x, rope, cache.layers) is None
    assert cache.length == 0
    assert stack(x, cache).shape == (1, 1, cfg.hidden_size)
    assert cache.length == 1
    # an MLP other than the dense SwiGLU (a mixture of experts has other products): no plan
    moe_like = _stack(cfg)
    moe_like.layers[0].mlp = torch.nn.Sequential(torch.nn.Linear(cfg.hidden_size, cfg.hidden_size))
    assert fused_stack_step(moe_like.layers, x, rope, moe_like.new_cache(1, 4).layers) is None


def _assert_close_up_to_rounding(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal up to float32 summation order. Most positions come out bit for bit equal, but
    now and then an activation lands on the other side of an int8 rounding boundary of the
    next product (one step of 1/127 of its group's largest value), which moves that product's
    outputs by about 0.5 %, and every later position that attends to it. A wrong head,
    position, mask or norm would put errors of order 100 % everywhere."""
    scale = want.abs().max()
    assert (got - want).abs().max() <= 2e-2 * scale


@torch.inference_mode()
def test_steps_it_does_not_serve_go_module_by_module():
    """Two streams, more new positions than MAX_ROWS or than the cache has room for,
    bfloat16, a padded cache, float weights or the reference backend: the fused step answers
    None and leaves the cache untouched."""
    cfg = CONFIGS[0]
    stack = _stack(cfg)
    layer = stack.layers[0]
    x = torch.randn(1, 1, cfg.hidden_size)
    rope = stack.rotary(torch.zeros(1, 1, dtype=torch.long), torch.float32)

    def cache(batch: int = 1, capacity: int = 4, pad: torch.Tensor | None = None):
        return stack.new_cache(batch, capacity, pad=pad).layers[0]

    refused = [
        (x.expand(2, 1, -1), cache(2)),
        (torch.randn(1, 17, cfg.hidden_size), cache(1, 20)),
        (torch.randn(1, 3, cfg.hidden_size), cache(1, 2)),
        (x.bfloat16(), stack.new_cache(1, 4, dtype=torch.bfloat16).layers[0]),
        (x, cache(1, 4, pad=torch.tensor([1]))),
        (x, cache(1, 0)),
    ]
    for inputs, kv in refused:
        assert fused_layer_step(layer, inputs, rope, kv) is None
        assert kv.length == 0
    with use_backend("reference"):
        kv = cache()
        assert fused_layer_step(layer, x, rope, kv) is None
    float_stack = DecoderStack(cfg).eval()
    assert fused_layer_step(float_stack.layers[0], x, rope, cache()) is None
    kv = cache()
    assert fused_layer_step(layer, x, rope, kv) is not None
    assert kv.length == 1


def test_an_input_that_requires_grad_is_served_only_without_grad():
    """A leaf that requires grad, under ``no_grad``: served (nothing is recorded); with
    gradients on: left to the module path, which records them."""
    cfg = CONFIGS[0]
    stack = _stack(cfg)
    rope = stack.rotary(torch.zeros(1, 1, dtype=torch.long), torch.float32)
    kv = stack.new_cache(1, 4).layers[0]
    leaf = torch.randn(1, 1, cfg.hidden_size, requires_grad=True)
    with torch.no_grad():
        assert fused_layer_step(stack.layers[0], leaf, rope, kv) is not None
    assert kv.length == 1
    assert fused_layer_step(stack.layers[0], leaf, rope, kv) is None
    assert kv.length == 1


@torch.inference_mode()
def test_grouped_projections_equal_separate_calls(int4_width):
    """q, k and v (or gate and up) in one launch give each layer's own output, bit for bit;
    layers it cannot group (float ones) run one by one."""
    stack = _stack(CONFIGS[1])
    attn, mlp = stack.layers[0].self_attn, stack.layers[0].mlp
    x = torch.randn(3, 2, CONFIGS[1].hidden_size)
    for layers in ((attn.q_proj, attn.k_proj, attn.v_proj), (mlp.gate_proj, mlp.up_proj)):
        got = project(x, *layers)
        assert len(got) == len(layers)
        for y, layer in zip(got, layers, strict=True):
            assert torch.equal(y, layer(x))
    plain = DecoderStack(CONFIGS[1]).layers[0].self_attn
    got = project(x, plain.q_proj, plain.k_proj)
    assert torch.equal(got[1], plain.k_proj(x))
