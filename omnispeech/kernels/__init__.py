"""Fused ops for codec decoding, each with a PyTorch reference and accelerated paths.

- :func:`codebook_embed`: sum or mean of ``K`` codebook vectors per frame (the Code2Wav input).
- :func:`snake_beta`: the SnakeBeta activation, fused with the preceding conv's bias and
  writing straight into the next causal conv's padded input buffer.
- :func:`residual_add`: ``x + y + bias`` closing a residual unit, in one pass.
- :func:`tap_matmul` (a conv as one matrix per tap) and :func:`linear`: matrix products that
  take a Numba kernel when they have few columns (a streaming push), where reading the weights
  is the whole cost, and torch's GEMM otherwise.

Paths: the reference in :mod:`.reference` (plain torch, always available, differentiable),
Numba kernels for CPU float32 tensors, Triton kernels for CUDA tensors. Numba and Triton are
imported on the first call that can use them. :func:`backend_info` says which path runs where;
:func:`use_backend` or ``OMNISPEECH_KERNELS=reference|numba|triton|auto`` forces one (rules in
:mod:`.dispatch`).

Weight-only quantized matrix products have CPU kernels of their own too, used by
:mod:`omnispeech.core.quant` on x86 processors with AVX2: :mod:`.numba_int4` (4-bit codes) and
:mod:`.numba_int8` (int8 rows); ``OMNISPEECH_KERNELS=reference`` turns them off as well.
"""

from omnispeech.kernels.dispatch import (
    BACKENDS,
    ENV_VAR,
    backend_info,
    requested_backend,
    use_backend,
)
from omnispeech.kernels.ops import (
    codebook_embed,
    linear,
    residual_add,
    snake_beta,
    tap_matmul,
)

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "backend_info",
    "codebook_embed",
    "linear",
    "requested_backend",
    "residual_add",
    "snake_beta",
    "tap_matmul",
    "use_backend",
]
