"""int8 weight-only linears: the fused CPU kernel equals the reference path, and an int8
talker stays close to the float one."""

from __future__ import annotations

import pytest
import torch

from omnispeech.core.quant import Int8Linear, quantize_linears_
from omnispeech.talker import Talker


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_fused_kernel_equals_reference(dtype):
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40)
    q = Int8Linear.from_linear(linear, dtype)
    x = torch.randn(3, 5, 96).to(dtype)
    with torch.no_grad():
        got = q(x)  # fused where available (16-bit on CPU), reference otherwise
    with torch.enable_grad():
        ref = q(x)  # grad mode forces the reference path
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert got.shape == (3, 5, 40) and got.dtype == dtype
    assert torch.allclose(got.float(), ref.float(), atol=tol, rtol=tol)
    # and both are close to the float layer (the quantization error is small)
    exact = linear(x.float())
    err = (got.float() - exact).abs().max() / exact.abs().max()
    assert err < 0.03


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
