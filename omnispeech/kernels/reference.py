"""Plain-PyTorch reference of every fused op: the ground truth the accelerated paths are tested
against, and the path taken whenever they cannot run (autograd, an unsupported dtype or device,
no Numba or Triton installed).

Each function computes its formula in the order the released models do, one torch op at a
time, so that it matches transformers 5.23.0 (``Qwen3OmniMoeSnakeBeta``, the ``Code2Wav``
code embedding) bit for bit on float32 inputs. Nothing here is fused; the point is to be
obviously right.
"""

from __future__ import annotations

import torch

# Added to e^beta before taking its reciprocal, as in the released SnakeBeta: it only matters
# when beta underflows, where it turns a division by zero into a huge but finite scale.
SNAKE_EPS = 1e-9


def snake_constants(
    log_alpha: torch.Tensor, log_beta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(e^alpha, 1 / (e^beta + 1e-9))``, each ``[C]``.

    The accelerated paths take these precomputed, so their per-channel constants are the very
    same floats as the reference's and only the per-sample math can differ.
    """
    # In place on fresh tensors: the same float32 ops as ``1.0 / (e^beta + eps)``, fewer
    # allocations (this runs on every call of the fused op).
    return torch.exp(log_alpha), torch.exp(log_beta).add_(SNAKE_EPS).reciprocal_()


def snake_beta(
    x: torch.Tensor,
    log_alpha: torch.Tensor,
    log_beta: torch.Tensor,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """SnakeBeta ``y = x' + sin(x' * e^alpha)^2 / (e^beta + 1e-9)`` with ``x' = x + bias``.

    Args:
        x: ``[B, C, T]``.
        log_alpha: ``[C]`` frequency, in log scale.
        log_beta: ``[C]`` magnitude, in log scale.
        bias: ``[C]`` added first (a preceding conv's bias), or None.
        out: ``[B, C, T]`` receiving the result; may be ``x`` itself.

    Returns:
        ``[B, C, T]``: ``out`` when given, else a new tensor.
    """
    if bias is not None:
        x = x + bias[:, None]
    alpha = torch.exp(log_alpha)[:, None]
    beta = torch.exp(log_beta)[:, None]
    # Same op order as the released model: reciprocal of (beta + eps), times sin^2, plus x.
    y = x + (1.0 / (beta + SNAKE_EPS)) * torch.pow(torch.sin(x * alpha), 2)
    return y if out is None else out.copy_(y)


def residual_add(
    x: torch.Tensor,
    y: torch.Tensor,
    bias: torch.Tensor | None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x + y + bias[c]``: the end of a residual unit whose last conv ran without its bias.

    Args:
        x: ``[B, C, T]`` the residual branch.
        y: ``[B, C, T]`` the conv output.
        bias: ``[C]`` or None.
        out: ``[B, C, T]`` receiving the result; may be ``x`` or ``y``.

    Returns:
        ``[B, C, T]``: ``out`` when given, else a new tensor.
    """
    z = x + y
    if bias is not None:
        z = z + bias[:, None]
    return z if out is None else out.copy_(z)


def codebook_embed(
    table: torch.Tensor, codes: torch.Tensor, offsets: torch.Tensor, scale: float
) -> torch.Tensor:
    """``scale * sum_k table[codes[b, k, t] + offsets[k]]``.

    Gathers all ``K`` vectors into ``[B, K, T, D]``, sums over ``K`` (torch adds them in order
    k = 0..K-1), then multiplies by ``scale``. With ``scale = 1 / K`` and ``K`` a power of two
    this equals ``.mean(1)`` of the released model bit for bit (``mean`` divides by ``K``, and
    multiplying by an exact reciprocal is the same); for other ``K`` it may differ by one ulp.

    Args:
        table: ``[N, D]`` every codebook's vectors stacked.
        codes: ``[B, K, T]`` integer codes, each within its codebook (checked by the caller).
        offsets: ``[K]`` integer row of codebook ``k``'s first vector in ``table``.
        scale: multiplies the sum (``1 / K`` for a mean, ``1`` for a residual sum).

    Returns:
        ``[B, T, D]`` in ``table``'s dtype.
    """
    rows = codes + offsets[:, None]
    return table[rows].sum(1) * scale
