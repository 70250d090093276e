"""Our 4-bit matrix-vector kernel (``omnispeech.kernels.numba_int4``) against the dequantized
weight: exact when the activations need no rounding, within the rounding of int8 activations
otherwise, in both register widths; and the layer falls back to the reference where it must."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from omnispeech.core.quant import FUSED_MAX_ROWS, Int4Linear, blocks_kernel
from omnispeech.kernels import use_backend

kernel = blocks_kernel()


def _avx512() -> bool:
    """Whether the int4 kernel takes its AVX-512 path here (False where it cannot load)."""
    try:
        from omnispeech.kernels.numba_int4 import WIDE
    except ImportError:
        return False
    return WIDE


pytestmark = pytest.mark.skipif(
    kernel is None, reason="our int4 kernel needs an x86 CPU with AVX2 and Numba"
)

# (out, in, rows): even and odd group counts (the AVX-512 path reads groups in pairs and
# leaves odd counts to the AVX2 path), one row and a decoding batch.
SHAPES = [(48, 256, 1), (33, 192, 5), (7, 128, FUSED_MAX_ROWS + 9), (96, 1024, 2)]


def _layer(
    out_features: int, in_features: int, seed: int = 0
) -> tuple[torch.nn.Linear, Int4Linear]:
    torch.manual_seed(seed)
    linear = torch.nn.Linear(in_features, out_features)
    q = Int4Linear.from_linear(linear, torch.float32)
    assert q.layout == "blocks"
    return linear, q


def _reference(q: Int4Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, q.dequantized(torch.float32), q.bias)


@pytest.mark.parametrize(("n", "k", "m"), SHAPES)
def test_exact_when_activations_are_integers(n, k, m, int4_width):
    """Activations that are integers with 127 in every group of 64 are their own int8
    rounding: the kernel then computes the reference sum exactly, up to float32 rounding.
    A wrong nibble order, group order or scale would show here at full size."""
    _, q = _layer(n, k)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(-126, 127, (m, k), generator=g).float()
    x.view(m, k // 64, 64)[..., 5] = 127.0
    got, want = q(x), _reference(q, x)
    assert got.shape == (m, n)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()


@pytest.mark.parametrize(("n", "k", "m"), SHAPES)
def test_close_on_real_valued_activations(n, k, m, int4_width):
    _, q = _layer(n, k)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(2))
    got, want = q(x), _reference(q, x)
    rel = (got - want).norm() / want.norm()
    # int8 activations per group of 64: about 0.7 % measured on random matrices
    assert rel < 0.015, rel
    # bfloat16 activations go through the same kernel and come back in bfloat16
    got16 = q(x.bfloat16())
    assert got16.dtype == torch.bfloat16
    assert (got16.float() - want).norm() / want.norm() < 0.02


def test_zero_rows_and_leading_dims():
    _, q = _layer(32, 128)
    x = torch.zeros(2, 3, 128)
    x[1, 2] = torch.randn(128)
    got = q(x)
    assert got.shape == (2, 3, 32)
    assert torch.allclose(got[0], q.bias.expand(3, 32), atol=1e-6)
    want = _reference(q, x[1, 2])
    assert (got[1, 2] - want).norm() / want.norm() < 0.015


def _count_kernel_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = kernel.int4_matmul
    monkeypatch.setattr(kernel, "int4_matmul", lambda *a: calls.append(1) or real(*a))
    return calls


def test_prompts_take_the_kernel_and_gradients_do_not(monkeypatch):
    """A prompt's many rows run the kernel too (unpacking the weight costs more); inputs that
    need a gradient never reach it."""
    calls = _count_kernel_calls(monkeypatch)
    _, q = _layer(16, 128)
    with torch.no_grad():
        q(torch.randn(1, 128))
        q(torch.randn(200, 128))
        assert len(calls) == 2
    x = torch.randn(2, 128, requires_grad=True)
    q(x).sum().backward()
    assert len(calls) == 2
    assert torch.allclose(x.grad, q.dequantized(torch.float32).sum(0).expand(2, 128))


def test_reference_backend_is_honoured(monkeypatch):
    calls = _count_kernel_calls(monkeypatch)
    _, q = _layer(16, 128)
    x = torch.randn(1, 128)
    with use_backend("reference"), torch.no_grad():
        assert torch.equal(q(x), _reference(q, x))
    assert not calls


def test_other_group_sizes_use_another_layout():
    torch.manual_seed(0)
    q = Int4Linear.from_linear(torch.nn.Linear(128, 32), torch.float32, group_size=32)
    assert q.layout in ("aten", "nibbles")


def test_avx2_target_compiles_and_runs(tmp_path):
    """On a processor without AVX-512 (most AMD EPYCs before Zen 4) only the AVX2 code may be
    compiled: LLVM cannot lower AVX-512 intrinsics there and the import would fail. Targeting
    Haswell reproduces that processor here, in a fresh process with its own Numba cache."""
    import os
    import subprocess
    import sys

    code = (
        "import torch, torch.nn.functional as F\n"
        "from omnispeech.kernels import numba_int4 as k\n"
        "from omnispeech.core.quant import Int4Linear\n"
        "assert not k.WIDE and k.usable()\n"
        "torch.manual_seed(0)\n"
        "q = Int4Linear.from_linear(torch.nn.Linear(256, 32), torch.float32)\n"
        "assert q.layout == 'blocks'\n"
        "x = torch.randn(3, 256)\n"
        "want = F.linear(x, q.dequantized(torch.float32), q.bias)\n"
        "print(float((q(x) - want).norm() / want.norm()))\n"
    )
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip()) < 0.015


@pytest.mark.xfail(
    _avx512(),
    reason="on an AMD Zen 4 (AVX-512) the activations' group sums (u) that a fresh compile of "
    "_rounded gives differ from its cached machine code's by up to 3.8e-6 (products by 1.4e-6); "
    "turning fastmath off there does not change it, and a minimal Numba sum does not reproduce "
    "it: still open",
    strict=False,
)
def test_a_fresh_compile_and_the_cached_kernels_agree_bit_for_bit(tmp_path):
    """The process that compiles the int4 kernels and the processes that load them from
    Numba's cache compute the same bits: an int4 product hashes the same in both, so a seed
    gives the same speech the first time. The processor's own target is compiled (on an AMD
    Zen 3 the two once differed by up to 2.4e-7, which moved sampled codes; every int4 kernel
    computes its rows with the same function as this product)."""
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, torch\n"
        "from omnispeech.core.quant import Int4Linear\n"
        "torch.manual_seed(0)\n"
        "q = Int4Linear.from_linear(torch.nn.Linear(1024, 512, bias=False), torch.float32)\n"
        "x = torch.randn(3, 1024)\n"
        "print(hashlib.sha256(q(x).numpy().tobytes()).hexdigest())\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_CPU_NAME", None)
    digests = []
    for _ in range(2):  # the first compiles and fills the cache, the second loads it
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stderr[-2000:]
        digests.append(done.stdout.strip())
    assert any(tmp_path.rglob("*.nbc"))  # the second process did have a cache to load
    assert digests[0] == digests[1]
