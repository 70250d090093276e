"""Fused kernels: each accelerated path equals the PyTorch reference, and dispatch picks the
path it claims (forcing, fallback when a backend is missing, autograd and dtype limits).

The Numba kernels compile once per checkout (``cache=True``); later runs load them from the
cache. Triton tests need a CUDA device (``requires_cuda``).
"""

from __future__ import annotations

import os
import signal
import time
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omnispeech.errors import ConfigError, InputError
from omnispeech.kernels import (
    backend_info,
    codebook_embed,
    dispatch,
    numba_cpu,
    reference,
    residual_add,
    snake_beta,
    use_backend,
)

# Numba's sin^2 and torch's float32 sin differ by an ulp or two of sin^2, scaled by
# 1 / e^beta (<= e^1.5 here); a wrong channel, bias or formula is off by far more.
SNAKE_TOL = dict(rtol=2e-6, atol=1e-5)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _snake_params(C: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    log_alpha = 0.5 * torch.randn(C, generator=g)
    log_beta = 0.5 * torch.randn(C, generator=g).clamp(-3, 3)
    bias = torch.randn(C, generator=g)
    return log_alpha, log_beta, bias


class Spy:
    """Counts the calls that reach one function of a kernel module."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> None:
        self.calls = 0
        inner = getattr(module, name)

        def wrapper(*args, **kwargs):
            self.calls += 1
            return inner(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)


@pytest.fixture(autouse=True)
def _auto_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from "auto", whatever OMNISPEECH_KERNELS the suite was run with."""
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)


@pytest.fixture
def fresh_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which backends were imported or warned about, for this test only."""
    monkeypatch.setattr(dispatch, "_loaded", {})
    monkeypatch.setattr(dispatch, "_warned", {})


# --- equivalence, CPU ------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    B=st.integers(1, 3),
    C=st.integers(1, 9),
    T=st.integers(1, 700),
    pad=st.integers(0, 7),
    with_bias=st.booleans(),
    mode=st.sampled_from(["new", "padded_out", "in_place"]),
    seed=st.integers(0, 2**16),
)
def test_snake_numba_equals_reference(B, C, T, pad, with_bias, mode, seed):
    g = _gen(seed)
    # x is a slice of a larger buffer: last dim contiguous, other strides arbitrary.
    x = (3 * torch.randn(B, C, T + pad, generator=g))[:, :, pad:]
    log_alpha, log_beta, bias = _snake_params(C, g)
    bias = bias if with_bias else None
    want = reference.snake_beta(x, log_alpha, log_beta, bias)
    sentinel = torch.full((B, C, pad + T + 2), 1234.5)
    if mode == "new":
        out = None
    elif mode == "padded_out":
        out = sentinel[:, :, pad : pad + T]
    else:
        out = x.clone()
    src = out if mode == "in_place" else x
    with torch.no_grad(), use_backend("numba"):
        got = snake_beta(src, log_alpha, log_beta, bias, out=out)
    if out is not None:
        assert got is out
    torch.testing.assert_close(got, want, **SNAKE_TOL)
    if mode == "padded_out":
        # Only the view was written: the left context and the spare tail are untouched.
        assert (sentinel[:, :, :pad] == 1234.5).all()
        assert (sentinel[:, :, pad + T :] == 1234.5).all()


@pytest.mark.parametrize("log_alpha", [0.0, 8.0, 12.0])
def test_snake_numba_accurate_for_large_arguments(log_alpha):
    """The kernel's own sin^2 (range reduction + polynomial) stays within an ulp of float64
    truth over up to 50 000 periods (|x * alpha| <= 1.6e5), closer than torch's float32 sin.

    ``x`` stays in [-1, 1] so that ``y`` is small and its rounding does not hide sin^2 errors.
    """
    x = torch.linspace(-1.0, 1.0, 200_003)[None, None, :]
    la, lb = torch.tensor([log_alpha]), torch.tensor([0.0])
    with torch.no_grad(), use_backend("numba"):
        got = snake_beta(x, la, lb)
    alpha, inv_beta = reference.snake_constants(la, lb)
    w = (x * alpha).double()  # the float32 product, as every path computes it
    truth = x.double() + inv_beta.double() * torch.sin(w) ** 2
    eps = torch.finfo(torch.float32).eps  # |y| <= 2: one eps is one or two ulps
    err = (got.double() - truth).abs().max().item()
    torch_err = (reference.snake_beta(x, la, lb).double() - truth).abs().max().item()
    assert err <= eps
    assert err <= torch_err


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(1, 3),
    C=st.integers(1, 9),
    T=st.integers(1, 500),
    pad=st.integers(0, 5),
    with_bias=st.booleans(),
    target=st.sampled_from(["new", "x", "y", "padded"]),
    seed=st.integers(0, 2**16),
)
def test_residual_add_numba_equals_reference(B, C, T, pad, with_bias, target, seed):
    g = _gen(seed)
    x = torch.randn(B, C, T + pad, generator=g)[:, :, pad:]
    y = torch.randn(B, C, T, generator=g)
    bias = torch.randn(C, generator=g) if with_bias else None
    want = reference.residual_add(x, y, bias)
    out = {"new": None, "x": x, "y": y, "padded": torch.empty(B, C + 1, T + 3)[:, 1:, 3:]}[target]
    with torch.no_grad(), use_backend("numba"):
        got = residual_add(x, y, bias, out=out)
    # Same adds in the same order: bit-identical.
    assert torch.equal(got, want)


@pytest.mark.parametrize(
    ("B", "K", "T", "D", "scale"),
    [(1, 16, 100, 64, 1 / 16), (8, 16, 1, 32, 1 / 16), (2, 3, 7, 24, 1 / 3), (3, 15, 4, 8, 1.0)],
)
def test_codebook_embed_numba_equals_reference(B, K, T, D, scale):
    g = _gen(B * K + T)
    size = 40
    # A table whose rows are strided (a column slice) and codes with strided time.
    table = torch.randn(K * size, D + 5, generator=g)[:, :D]
    codes = torch.randint(0, size, (B, K, 2 * T), generator=g)[:, :, ::2]
    offsets = torch.arange(K) * size
    want = reference.codebook_embed(table, codes, offsets, scale)
    with use_backend("numba"):
        got = codebook_embed(table, codes, offsets, scale)
    assert got.shape == (B, T, D)
    assert torch.equal(got, want)
    if K == 16:
        # The released model's mean over 16 codebooks, bit for bit.
        assert torch.equal(got, table[codes + offsets[:, None]].mean(1))


def test_numba_then_torch_then_numba():
    """Numba's thread pool and torch's OpenMP pool take turns without breaking each other."""
    g = _gen(2)
    x = torch.randn(1, 64, 4000, generator=g)
    log_alpha, log_beta, bias = _snake_params(64, g)
    w = torch.randn(64, 64, generator=g)
    with torch.no_grad(), use_backend("numba"):
        first = snake_beta(x, log_alpha, log_beta, bias)
        mixed = torch.matmul(w, first[0])
        second = snake_beta(x, log_alpha, log_beta, bias)
    assert torch.equal(first, second)
    torch.testing.assert_close(mixed, torch.matmul(w, first[0]))


def test_numba_uses_torch_thread_count():
    import numba

    before = torch.get_num_threads()
    x = torch.randn(1, 4, 64)
    try:
        torch.set_num_threads(1)
        with torch.no_grad(), use_backend("numba"):
            snake_beta(x, torch.zeros(4), torch.zeros(4))
        assert numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# --- dispatch ----------------------------------------------------------------------------------


def _snake_call() -> tuple[torch.Tensor, torch.Tensor]:
    """(result of snake_beta under the current setting, the reference result)."""
    g = _gen(3)
    x = torch.randn(2, 5, 33, generator=g)
    log_alpha, log_beta, bias = _snake_params(5, g)
    with torch.no_grad():
        return snake_beta(x, log_alpha, log_beta, bias), reference.snake_beta(
            x, log_alpha, log_beta, bias
        )


@pytest.mark.usefixtures("fresh_dispatch")
def test_use_backend_forces_the_path(monkeypatch):
    spy = Spy(monkeypatch, numba_cpu, "snake_beta")
    with use_backend("reference"):
        got, want = _snake_call()
        assert spy.calls == 0
        assert torch.equal(got, want)
        with use_backend("numba"):  # nested: the inner block wins, then the outer is restored
            _snake_call()
            assert spy.calls == 1
        _snake_call()
        assert spy.calls == 1
    _snake_call()  # auto picks Numba on CPU
    assert spy.calls == 2
    with use_backend("triton"):  # Triton only serves CUDA tensors: CPU runs the reference
        _snake_call()
        assert spy.calls == 2
    with pytest.raises(ConfigError, match="unknown kernel backend"):
        with use_backend("fast"):
            pass


@pytest.mark.usefixtures("fresh_dispatch")
def test_env_var_forces_the_path(monkeypatch):
    spy = Spy(monkeypatch, numba_cpu, "snake_beta")
    monkeypatch.setenv("OMNISPEECH_KERNELS", "reference")
    _snake_call()
    assert spy.calls == 0
    assert backend_info()["snake_beta"]["cpu"] == "reference"
    with use_backend("auto"):  # the context manager outranks the environment
        _snake_call()
    assert spy.calls == 1
    monkeypatch.setenv("OMNISPEECH_KERNELS", "Numba ")
    _snake_call()
    assert spy.calls == 2
    monkeypatch.setenv("OMNISPEECH_KERNELS", "gpu")
    with pytest.raises(ConfigError, match="OMNISPEECH_KERNELS"):
        _snake_call()


@pytest.mark.usefixtures("fresh_dispatch")
def test_backend_info_reports_the_paths():
    info = backend_info()
    assert set(info) == {"codebook_embed", "snake_beta", "residual_add", "tap_matmul", "linear"}
    assert info["snake_beta"]["cpu"] == "numba"
    assert info["tap_matmul"]["cpu"] == "numba"
    assert info["linear"]["cuda"] == "reference"  # no GPU kernel: torch's GEMM serves there
    if not torch.cuda.is_available():
        assert info["snake_beta"]["cuda"] == "reference"
    with use_backend("reference"):
        forced = backend_info()
    assert all(paths == {"cpu": "reference", "cuda": "reference"} for paths in forced.values())


@pytest.mark.usefixtures("fresh_dispatch")
def test_falls_back_when_numba_is_missing(monkeypatch):
    def no_numba(name: str):
        raise ImportError(f"No module named 'numba' (simulated, importing {name})")

    monkeypatch.setattr(dispatch, "_import", no_numba)
    spy = Spy(monkeypatch, numba_cpu, "snake_beta")
    with pytest.warns(RuntimeWarning, match="numba is unavailable"):
        got, want = _snake_call()
    assert torch.equal(got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not on every call
        _snake_call()
    assert spy.calls == 0
    assert backend_info()["snake_beta"]["cpu"] == "reference"
    with use_backend("numba"):
        assert backend_info()["snake_beta"]["cpu"].startswith("unavailable: ImportError")
        with pytest.raises(ConfigError, match="numba"):
            _snake_call()


@pytest.mark.usefixtures("fresh_dispatch")
def test_forked_child_takes_the_reference(monkeypatch):
    """GNU OpenMP cannot serve a forked child: Numba would kill it, so the child must not call
    the kernels (simulated here by changing the pid the module was imported in)."""
    spy = Spy(monkeypatch, numba_cpu, "snake_beta")
    monkeypatch.setattr(numba_cpu, "_IMPORT_PID", -1)
    got, want = _snake_call()
    assert spy.calls == 0
    assert torch.equal(got, want)
    assert backend_info()["snake_beta"]["cpu"] == "reference"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the platform has no fork()")
def test_real_fork_after_kernels_ran():
    _snake_call()  # the parent has started Numba's OpenMP threads
    pid = os.fork()
    if pid == 0:  # child: exit at once with the verdict, never return into pytest
        code = 1
        try:
            torch.set_num_threads(1)  # torch's own OpenMP pool does not survive fork either
            got, want = _snake_call()
            code = 0 if torch.equal(got, want) else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0


def test_autograd_and_other_dtypes_take_the_reference(monkeypatch):
    spy = Spy(monkeypatch, numba_cpu, "snake_beta")
    g = _gen(4)
    x = torch.randn(1, 3, 20, generator=g)
    log_alpha = torch.zeros(3, requires_grad=True)
    log_beta = torch.zeros(3, requires_grad=True)
    y = snake_beta(x, log_alpha, log_beta)  # grad enabled and parameters need it
    y.sum().backward()
    assert spy.calls == 0
    assert log_alpha.grad is not None and log_alpha.grad.abs().sum() > 0
    with torch.no_grad():
        x64 = x.double()
        got = snake_beta(x64, log_alpha.double(), log_beta.double())
        assert spy.calls == 0
        assert torch.equal(got, reference.snake_beta(x64, log_alpha.double(), log_beta.double()))
        snake_beta(x, log_alpha, log_beta)  # the same parameters without a graph: Numba
        assert spy.calls == 1


def test_bad_arguments_raise_input_errors():
    x = torch.randn(2, 4, 10)
    p = torch.zeros(4)
    with pytest.raises(InputError, match="log_beta"):
        snake_beta(x, p, torch.zeros(3))
    buf = torch.randn(2, 4, 11)
    with pytest.raises(InputError, match="overlaps"):
        snake_beta(buf[:, :, :10], p, p, out=buf[:, :, 1:])
    with pytest.raises(InputError, match="out must match"):
        residual_add(x, x.clone(), None, out=torch.empty(2, 4, 10, dtype=torch.float64))
    with pytest.raises(InputError, match="offsets"):
        codebook_embed(torch.randn(8, 4), torch.zeros(1, 2, 3, dtype=torch.long), p, 1.0)


# --- equivalence, CUDA (Triton) ----------------------------------------------------------------


@pytest.mark.requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True])
def test_snake_and_residual_triton_equal_reference(dtype, with_bias):
    g = _gen(5)
    B, C, T, pad = 2, 48, 3001, 6
    tol = SNAKE_TOL if dtype == torch.float32 else dict(rtol=1.6e-2, atol=1.6e-2)
    buf = (3 * torch.randn(B, C, T + pad, generator=g)).cuda().to(dtype)
    x = buf[:, :, pad:]
    log_alpha, log_beta, bias = (p.cuda() for p in _snake_params(C, g))
    bias = bias if with_bias else None
    # The oracle is the float32 reference on the same (rounded) inputs.
    want = reference.snake_beta(x.float(), log_alpha, log_beta, bias)
    assert backend_info()["snake_beta"]["cuda"] == "triton"
    with torch.no_grad(), use_backend("triton"):
        padded = torch.full((B, C, T + pad), 99.0, device="cuda", dtype=dtype)
        got = snake_beta(x, log_alpha, log_beta, bias, out=padded[:, :, pad:])
        torch.testing.assert_close(got.float(), want, **tol)
        assert (padded[:, :, :pad] == 99.0).all()
        in_place = x.clone()
        snake_beta(in_place, log_alpha, log_beta, bias, out=in_place)
        torch.testing.assert_close(in_place.float(), want, **tol)
        y = torch.randn(B, C, T, generator=g).cuda().to(dtype)
        want_sum = reference.residual_add(x.float(), y.float(), bias)
        got_sum = residual_add(x, y, bias, out=y)
        torch.testing.assert_close(got_sum.float(), want_sum, **tol)


@pytest.mark.requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("B", "K", "T", "D"), [(1, 16, 100, 1024), (8, 16, 1, 1024), (2, 3, 5, 40)]
)
def test_codebook_embed_triton_equals_reference(dtype, B, K, T, D):
    g = _gen(6)
    size = 64
    table = torch.randn(K * size, D, generator=g).cuda().to(dtype)
    codes = torch.randint(0, size, (B, K, T), generator=g).cuda()
    offsets = (torch.arange(K) * size).cuda()
    want = reference.codebook_embed(table.float(), codes, offsets, 1 / K)
    with use_backend("triton"):
        got = codebook_embed(table, codes, offsets, 1 / K)
    assert got.dtype == dtype and got.shape == (B, T, D)
    if dtype == torch.float32:
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    else:
        torch.testing.assert_close(got.float(), want, rtol=1.6e-2, atol=1e-2)
