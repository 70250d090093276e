"""Training ops fused by ``torch.compile`` (:mod:`omnispeech.kernels.compiled`): the same values
and gradients as the references, off unless a run asks for them, eager when compiling fails."""

from __future__ import annotations

import pytest
import torch

from omnispeech.kernels import compiled, reference, snake_beta
from omnispeech.kernels.compiled import compiled_training


def _inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 8, 300, generator=g)
    log_alpha, log_beta, bias = (0.3 * torch.randn(8, generator=g) for _ in range(3))
    return tuple(t.requires_grad_() for t in (x, log_alpha, log_beta, bias))


def _grads(y: torch.Tensor, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    weight = torch.linspace(-1, 1, y.numel()).view_as(y)  # a loss that weighs every output
    return torch.autograd.grad((y * weight).sum(), inputs)


def test_compiled_snake_gives_the_reference_values_and_gradients(monkeypatch):
    monkeypatch.setitem(compiled._state, "broken", False)
    ours, ref = _inputs(), _inputs()
    out = torch.zeros(2, 8, 300)
    with compiled_training():
        y = snake_beta(*ours[:3], bias=ours[3], out=out)
    assert "snake" in compiled._compiled  # the compiled path served it
    assert y is out
    want = reference.snake_beta(*ref[:3], ref[3], None)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    for got, expected in zip(_grads(y, ours), _grads(want, ref), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_off_unless_asked_and_eager_when_compiling_fails(monkeypatch):
    x, log_alpha, log_beta, _ = _inputs(1)
    assert not compiled._state["enabled"]
    assert compiled.snake_beta(x, log_alpha, log_beta, None) is None  # off by default

    def failing(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setitem(compiled._compiled, "snake", failing)
    monkeypatch.setitem(compiled._state, "broken", False)
    with compiled_training(), pytest.warns(RuntimeWarning, match="training runs the eager ops"):
        y = snake_beta(x, log_alpha, log_beta)
    assert compiled._state["broken"]
    assert not compiled._state["enabled"]  # the block restored the switch
    torch.testing.assert_close(y, reference.snake_beta(x, log_alpha, log_beta, None, None))
