"""Our int8 matrix-vector kernel (``omnispeech.kernels.numba_int8``) against the dequantized
weight: exact when the activations need no rounding, within the rounding of int8 activations
otherwise; and which layers and calls it serves."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from omnispeech.core.quant import FUSED_MAX_ROWS, Int8Linear, int8_kernel
from omnispeech.kernels import use_backend

kernel = int8_kernel()
pytestmark = pytest.mark.skipif(
    kernel is None, reason="our int8 kernel needs an x86 CPU with AVX2 and Numba"
)


def _layer(n: int, k: int, dtype: torch.dtype = torch.bfloat16) -> Int8Linear:
    torch.manual_seed(0)
    return Int8Linear.from_linear(torch.nn.Linear(k, n), dtype)


def _reference(q: Int8Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x.float(), q.dequantized(torch.float32), q.bias.float())


@pytest.mark.parametrize(("n", "k", "m"), [(48, 128, 1), (33, 192, 5), (96, 1024, FUSED_MAX_ROWS)])
def test_exact_when_activations_are_integers(n, k, m):
    """Integers with 127 in every group of 64 are their own int8 rounding: the kernel's sum is
    then the reference's up to float32 rounding (a wrong sign trick or group order is not)."""
    q = _layer(n, k, torch.float32)
    x = torch.randint(-126, 127, (m, k), generator=torch.Generator().manual_seed(1)).float()
    x.view(m, k // 64, 64)[..., 3] = 127.0
    x.view(m, k // 64, 64)[..., 4] = -127.0
    with torch.no_grad():
        got = q(x)
    want = _reference(q, x)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_close_in_every_dtype(dtype):
    q = _layer(64, 256, dtype)
    x = torch.randn(2, 3, 256, generator=torch.Generator().manual_seed(2)).to(dtype)
    with torch.no_grad():
        got = q(x)
    assert got.dtype == dtype and got.shape == (2, 3, 64)
    want = _reference(q, x)
    # int8 activations per group of 64: about 0.4-0.6 % on random matrices (plus the dtype's)
    assert (got.float() - want).norm() / want.norm() < 0.02


def test_which_calls_it_serves(monkeypatch):
    """Single rows in 16 bits and up to FUSED_MAX_ROWS rows in float32, of layers 64 columns
    wide, take it; several 16-bit rows (ATen's fused kernel is faster there), prefills, other
    widths, gradients and the reference backend do not."""
    calls: list[int] = []
    real = kernel.int8_matmul
    monkeypatch.setattr(kernel, "int8_matmul", lambda *a: calls.append(1) or real(*a))
    q = _layer(16, 128)
    with torch.no_grad():
        q(torch.randn(1, 128, dtype=torch.bfloat16))
        _layer(16, 128, torch.float32)(torch.randn(FUSED_MAX_ROWS, 128))
        assert len(calls) == 2
        q(torch.randn(2, 128, dtype=torch.bfloat16))
        q(torch.randn(FUSED_MAX_ROWS + 1, 128, dtype=torch.bfloat16))
        _layer(16, 96)(torch.randn(1, 96, dtype=torch.bfloat16))
        with use_backend("reference"):
            q(torch.randn(1, 128, dtype=torch.bfloat16))
    x = torch.randn(1, 128, requires_grad=True)
    _layer(16, 128, torch.float32)(x).sum().backward()
    assert len(calls) == 2 and x.grad is not None
