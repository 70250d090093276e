"""The few-column matrix ops (``tap_matmul``, ``linear``): the Numba kernel equals torch's
GEMM to float32 rounding, serves exactly the products it is meant for, and the vocoder's
streaming push, which is where they run, still equals offline decoding."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omnispeech.core.linear import StepLinear
from omnispeech.errors import InputError
from omnispeech.kernels import linear, numba_cpu, reference, tap_matmul, use_backend
from omnispeech.kernels.ops import SKINNY_COLUMNS
from tests.test_kernels import Spy


def _tol(terms: int) -> dict[str, float]:
    """A float32 sum of ``terms`` products of N(0, 1) values, added in another order, moves by
    a few ulps of its partial sums (which grow like sqrt(terms)): well under 1e-6 * terms. A
    wrong tap, column or bias moves an output by O(1)."""
    return dict(rtol=1e-5, atol=1e-6 * terms)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 7),
    M=st.integers(1, 70),
    C=st.integers(1, 90),
    n=st.integers(1, SKINNY_COLUMNS),
    B=st.integers(1, 2),
    dilation=st.sampled_from([1, 3, 9]),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_tap_matmul_numba_equals_reference(k, M, C, n, B, dilation, with_bias, seed):
    n = max(1, min(n, SKINNY_COLUMNS // B))
    g = _gen(seed)
    taps = torch.randn(k, M, C, generator=g)
    # A view with a left margin, as the vocoder passes a slice of its padded buffer.
    x = torch.randn(B, C, 3 + (k - 1) * dilation + n, generator=g)[..., 3:]
    bias = torch.randn(M, generator=g) if with_bias else None
    with use_backend("numba"):
        got = tap_matmul(taps, x, dilation, bias)
    want = reference.tap_matmul(taps, x, dilation, bias)
    assert got.shape == (B, M, n)
    torch.testing.assert_close(got, want, **_tol(k * C))


@pytest.mark.parametrize("shape", [(1,), (3,), (2, 4), (1, 1, 8)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_numba_equals_reference(shape, with_bias):
    g = _gen(len(shape))
    x = torch.randn(*shape, 48, generator=g)
    weight = torch.randn(33, 48, generator=g)
    bias = torch.randn(33, generator=g) if with_bias else None
    with use_backend("numba"):
        got = linear(x, weight, bias)
    assert got.shape == (*shape, 33)
    torch.testing.assert_close(got, torch.nn.functional.linear(x, weight, bias), **_tol(48))


def test_the_kernel_serves_few_columns_only(monkeypatch):
    taps_spy = Spy(monkeypatch, numba_cpu, "tap_matmul")
    linear_spy = Spy(monkeypatch, numba_cpu, "linear")
    taps, w = torch.randn(3, 16, 8), torch.randn(16, 8)
    with use_backend("auto"):
        tap_matmul(taps, torch.randn(1, 8, 2 + SKINNY_COLUMNS))  # n = SKINNY_COLUMNS
        tap_matmul(taps, torch.randn(2, 8, 2 + SKINNY_COLUMNS))  # 2 x SKINNY_COLUMNS columns
        linear(torch.randn(SKINNY_COLUMNS, 8), w)
        linear(torch.randn(SKINNY_COLUMNS + 1, 8), w)
        linear(torch.randn(2, 8, dtype=torch.float64), w.double())  # the kernel is float32 only
    assert (taps_spy.calls, linear_spy.calls) == (1, 1)
    with use_backend("reference"):
        tap_matmul(taps, torch.randn(1, 8, 3))
    assert taps_spy.calls == 1


def test_autograd_takes_the_reference(monkeypatch):
    spy = Spy(monkeypatch, numba_cpu, "linear")
    layer = StepLinear(8, 4)
    x = torch.randn(2, 8, requires_grad=True)
    with use_backend("auto"):
        layer(x).sum().backward()
    assert spy.calls == 0 and x.grad is not None and layer.weight.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(
            layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias)
        )
    assert spy.calls == 1


def test_step_linear_keeps_nn_linear_keys():
    assert set(StepLinear(4, 3).state_dict()) == {"weight", "bias"}
    assert isinstance(StepLinear(4, 3, bias=False), torch.nn.Linear)


def test_bad_arguments_raise_input_errors():
    with pytest.raises(InputError, match="taps"):
        tap_matmul(torch.randn(3, 4, 5), torch.randn(1, 6, 9))
    with pytest.raises(InputError, match="at least 4 steps"):
        tap_matmul(torch.randn(3, 4, 5), torch.randn(1, 5, 3), dilation=2)
    with pytest.raises(InputError, match="bias"):
        tap_matmul(torch.randn(3, 4, 5), torch.randn(1, 5, 9), bias=torch.randn(5))
    # Only context: an empty product, as a causal conv's first call over no new steps.
    assert tap_matmul(torch.randn(3, 4, 5), torch.randn(1, 5, 2)).shape == (1, 4, 0)


@pytest.mark.parametrize("n", [1, 5, 32, 40])
def test_batched_reference_equals_each_stream_alone(n):
    """Streams side by side (up to 32 steps) or a batched matmul (beyond): each stream's
    output is the one it gets alone."""
    g = _gen(n)
    taps, bias = torch.randn(3, 20, 12, generator=g), torch.randn(20, generator=g)
    x = torch.randn(3, 12, n + 2 * 2, generator=g)
    got = reference.tap_matmul(taps, x, 2, bias)
    alone = torch.cat([reference.tap_matmul(taps, x[b : b + 1], 2, bias) for b in range(3)])
    assert got.shape == (3, 20, n) and got.is_contiguous()
    torch.testing.assert_close(got, alone, **_tol(3 * 12))
