"""int8 and int4 weight-only linears: the fused CPU kernels equal the reference paths, and
quantized talkers stay close to the float one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from omnispeech.core.quant import (
    FUSED_MAX_ROWS,
    Int4Linear,
    Int8Linear,
    blocks_kernel,
    dequantize_int4,
    quantize_int4,
    quantize_linears_,
)
from omnispeech.kernels import use_backend
from omnispeech.talker import Talker


@pytest.mark.parametrize("rows", [1, 4, 40])  # up to FUSED_MAX_ROWS fused, a prefill not
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_fused_kernel_equals_reference(dtype, rows):
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40)
    q = Int8Linear.from_linear(linear, dtype)
    x = torch.randn(1, rows, 96).to(dtype)
    with torch.no_grad():
        got = q(x)  # fused where available (16-bit on CPU, few rows), reference otherwise
    with torch.enable_grad():
        ref = q(x)  # grad mode forces the reference path
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert got.shape == (1, rows, 40) and got.dtype == dtype
    assert torch.allclose(got.float(), ref.float(), atol=tol, rtol=tol)
    # and both are close to the float layer (the quantization error is small)
    exact = linear(x.float())
    err = (got.float() - exact).abs().max() / exact.abs().max()
    assert err < 0.03


def test_fused_kernel_serves_decoding_steps_and_not_prefills(monkeypatch):
    """ATen's fused kernel costs about one matrix-vector product per input row: a few rows (one
    per stream) use it, a prompt's many rows multiply the dequantized weight instead. (Our own
    int8 kernel, which would take this layer first, is switched off here; its own tests are in
    test_int8_kernel.py.)"""
    if not hasattr(torch, "_weight_int8pack_mm"):
        pytest.skip("this torch has no fused int8 CPU kernel")
    calls = []
    fused = torch._weight_int8pack_mm
    monkeypatch.setattr(torch, "_weight_int8pack_mm", lambda *a: calls.append(1) or fused(*a))
    q = Int8Linear.from_linear(torch.nn.Linear(64, 32), torch.bfloat16)
    with torch.no_grad(), use_backend("reference"):
        q(torch.randn(FUSED_MAX_ROWS, 64, dtype=torch.bfloat16))
        assert len(calls) == 1
        q(torch.randn(2, FUSED_MAX_ROWS, 64, dtype=torch.bfloat16))
        assert len(calls) == 1


def test_quantize_replaces_every_linear():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Sequential(torch.nn.Linear(8, 4)))
    assert quantize_linears_(model, torch.float32) == 2
    assert all(not isinstance(m, torch.nn.Linear) for m in model.modules())


def test_int8_talker_close_to_float(tmp_path):
    from tests.test_talker_parity import GOLDEN

    talker = Talker.from_pretrained(GOLDEN)
    x = torch.randn(
        1, 9, talker.spec.talker.hidden_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        want = talker(x)
        talker.quantize_int8()
        got = talker(x)
    rel = (got - want).abs().max() / want.abs().max()
    assert rel < 0.05
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() > 0.8


# -- int4 -------------------------------------------------------------------------------------


def test_int4_grid_beats_plain_min_max():
    """Codes lie in 0..15; weights inside a group's chosen range are within half a step of it;
    the chosen ranges never do worse than the plain [min, max] grid (one of the candidates)."""
    w = torch.randn(48, 128, generator=torch.Generator().manual_seed(0))
    q, scale, zero = quantize_int4(w, 32)
    assert q.dtype == torch.uint8 and int(q.max()) <= 15
    back = dequantize_int4(q, scale, zero, 32)
    step = scale.repeat_interleave(32, dim=1)
    low = (zero - 8 * scale).repeat_interleave(32, dim=1)
    inside = (w >= low) & (w <= low + 15 * step)
    assert ((back - w).abs()[inside] <= step[inside] / 2 + 1e-6).all()
    g = w.reshape(48, 4, 32)
    lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    plain = torch.round((g - lo) / ((hi - lo) / 15)) * ((hi - lo) / 15) + lo
    plain_err = (plain - g).square().sum(-1)
    err = (back.reshape(48, 4, 32) - g).square().sum(-1)
    # measured: 4.7% less squared error in all than the plain grid
    assert (err <= plain_err + 1e-6).all() and err.sum() < 0.97 * plain_err.sum()


@pytest.mark.parametrize("use_kernel", [True, False])
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int4_linear_equals_its_dequantized_weight(use_kernel, group_size, dtype):
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 48)
    q = Int4Linear.from_linear(linear, dtype, group_size, use_kernel=use_kernel)
    # 48 rows fit ATen's tiles of 16 and 256 columns our groups of 64, so a kernel layout
    # is stored whenever one is asked for.
    assert q.kernel_layout == use_kernel
    if use_kernel and group_size == 64 and blocks_kernel() is not None:
        assert q.layout == "blocks"
    x = torch.randn(2, 3, 256)
    got = q(x.to(dtype)).float()
    codes, scale, zero = quantize_int4(linear.weight, group_size)
    w = dequantize_int4(codes, scale, zero, group_size)
    # The scales are stored in 16 bits: the expected weight uses the stored ones.
    w16 = dequantize_int4(codes, *q.scales_offsets(), group_size)
    want = F.linear(x.to(dtype).float(), w16, linear.bias.to(dtype).float())
    assert got.shape == (2, 3, 48)
    if q.layout == "blocks":
        # our kernel rounds each group of activations to int8: about 0.7 % of the output
        assert (got - want).norm() / want.norm() < 0.015
    else:
        tol = 1e-4 if dtype == torch.float32 else 0.25
        assert (got - want).abs().max() < tol
    assert torch.allclose(q.dequantized(torch.float32), w16, atol=1e-5)
    assert torch.allclose(w16, w, atol=1e-6 if q.scale_zeros.dtype == torch.float32 else 2e-3)
    # and the layer stays close to the float one (the rounding error of 4 bits)
    exact = linear(x)
    assert ((got - exact).abs().max() / exact.abs().max()) < 0.15


def test_int4_odd_shapes_take_the_reference_path():
    """Shapes the kernel cannot hold (rows not in tiles of 16, widths not a multiple of the
    group) quantize with the largest common group and the nibble layout."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 10, bias=False)
    q = Int4Linear.from_linear(linear, torch.float32, 64)
    assert not q.kernel_layout and q.group_size == 8
    x = torch.randn(5, 24)
    codes, scale, zero = quantize_int4(linear.weight, 8)
    want = x @ dequantize_int4(codes, scale, zero, 8).t()
    assert torch.allclose(q(x), want, atol=1e-5)
    with pytest.raises(ValueError, match="odd"):
        Int4Linear.from_linear(torch.nn.Linear(5, 16), torch.float32)


def test_quantize_linears_4_bits():
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 16))
    assert quantize_linears_(model, torch.float32, bits=4, group_size=32) == 2
    assert all(isinstance(m, Int4Linear) for m in model)
    with pytest.raises(ValueError, match="bits"):
        quantize_linears_(model, torch.float32, bits=3)


def _kernel_sized_talker() -> Talker:
    """A random Qwen3-TTS talker whose every quantized layer fits the int4 kernel (widths in
    multiples of 64, rows in multiples of 16), so the talker test runs the kernel path."""
    import json

    from omnispeech.talker.config import spec_from_qwen3_tts
    from tests.conftest import redraw
    from tests.test_talker_parity import GOLDEN

    cfg = json.loads((GOLDEN / "config.json").read_text())
    shape = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    )
    cfg["talker_config"].update(shape, text_hidden_size=64)
    cfg["talker_config"]["code_predictor_config"].update(shape, vocab_size=256)
    talker = Talker(spec_from_qwen3_tts(cfg)).eval()
    redraw(talker, std=0.15, seed=3)
    return talker


def _greedy_frames(talker: Talker, prompt: torch.Tensor, frames: int) -> torch.Tensor:
    from omnispeech.talker import GenerationConfig

    gen = GenerationConfig.greedy()
    state = talker.start(prompt, prompt.shape[1] + frames + 1)
    out = []
    for _ in range(frames):
        codes = talker.sample_frame(state, gen, allow_end=False)
        out.append(codes)
        talker.advance(state, codes, torch.zeros_like(state.hidden))
    return torch.stack(out, dim=-1)


@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_int4_talker_close_to_float(group_size):
    """Codebook-0 logits of the int4 talker against float32 on the same random weights.

    Measured on this model: the max error is 22% / 24% / 28% of the largest logit at groups
    32 / 64 / 128 (int8: 2%), and the arg-max agrees at 67% / 44% / 56% of the 9 positions.
    Random weights have no margin between their top codes (2048 near-equal candidates), so
    greedy codes are compared at the released shapes by ``benchmarks/quant_error.py`` and on
    trained weights, not here. A wrong packing or scale order gives errors near 100%.
    """
    talker = _kernel_sized_talker()
    x = torch.randn(1, 9, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = talker(x)
        # every linear but the prompt-only text projection's two
        linears = sum(isinstance(m, torch.nn.Linear) for m in talker.modules())
        assert talker.quantize_int4(group_size) == linears - 2
        layers = [m for m in talker.modules() if isinstance(m, Int4Linear)]
        assert layers and all(m.kernel_layout for m in layers)
        got = talker(x)
        # the frame loop runs on the quantized layers too
        codes = _greedy_frames(talker, x, 3)
    rel = (got - want).abs().max() / want.abs().max()
    assert rel < 0.35, rel
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.3
    assert codes.shape == (1, talker.num_code_groups, 3) and int(codes.min()) >= 0


def test_tts_int4_pipeline_and_cli(tmp_path, monkeypatch):
    """``TTS.from_pretrained(quantize="int4")`` keeps the dtype and converts the talker; the
    CLI's ``--int4`` speaks, and ``--int8 --int4`` together is one clear error."""
    import warnings

    import soundfile as sf
    from click.testing import CliRunner

    from omnispeech.cli import main
    from omnispeech.errors import InputError
    from omnispeech.pipelines import TTS, tts_loop
    from omnispeech.pipelines.tts_loop import GenerationWarning
    from tests.tts_ref import tiny_tts

    # Random weights never end speech: a short duration guard keeps the run to a few frames.
    monkeypatch.setattr(tts_loop, "GUARD_SECONDS", 0.3)
    monkeypatch.setattr(tts_loop, "GUARD_SECONDS_PER_TOKEN", 0.1)
    folder = tiny_tts(tmp_path / "tts")
    tts = TTS.from_pretrained(folder, quantize="int4")
    assert isinstance(tts.talker.codec_head, Int4Linear)
    assert tts.talker.model.norm.weight.dtype == torch.float32
    with pytest.raises(InputError, match="quantize"):
        TTS.from_pretrained(folder, quantize="int2")
    out = tmp_path / "out.wav"
    args = ["tts", "Hello.", "-o", str(out), "-m", str(folder), "--seed", "1", "--greedy"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GenerationWarning)  # random weights never end
        result = CliRunner().invoke(main, [*args, "--int4"])
    assert result.exit_code == 0, result.output
    assert len(sf.read(out)[0]) > 0
    result = CliRunner().invoke(main, [*args, "--int4", "--int8"])
    assert result.exit_code != 0 and "one of --int8 and --int4" in result.output
