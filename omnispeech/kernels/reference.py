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
# Steps per stream up to which tap_matmul puts a batch's streams side by side (measured on an AMD
# EPYC: at the vocoder's widths it wins up to 32 steps; beyond, the batched matmul).
FOLD_MAX_STEPS = 32


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


def tap_matmul(
    taps: torch.Tensor, x: torch.Tensor, dilation: int = 1, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``out[b, :, t] = bias + sum_j taps[j] @ x[b, :, t + j * dilation]``: a dense conv as
    ``k`` accumulated GEMMs over shifted views of the (already padded) input.

    No im2col copy and no layout reorder: with many columns this runs the vocoder's k7 convs
    1.1-1.8x faster than oneDNN's direct conv on CPU (and it is what runs on GPUs). A batch of
    short inputs (streams pushing a few steps each) is laid side by side as the columns of one
    matrix, so that each weight is read once per tap for all streams: a batched matmul reads it
    once per stream, 4-10x slower at 4-16 streams of 1-8 steps. For long inputs the copies that
    takes cost more than they save, and the batched matmul runs.

    Args:
        taps: ``[k, M, C]`` one ``[M, C]`` matrix per tap.
        x: ``[B, C, T]`` with ``T >= (k - 1) * dilation + 1``.
        dilation: input steps between taps.
        bias: ``[M]`` or None.

    Returns:
        ``[B, M, T - (k - 1) * dilation]``.
    """
    k = taps.shape[0]
    B, C, _ = x.shape
    n = x.shape[-1] - (k - 1) * dilation
    if B > 1 and n > FOLD_MAX_STEPS:
        out = torch.matmul(taps[0], x[..., :n])
        if bias is not None:
            out.add_(bias[:, None])
        for j in range(1, k):
            out.baddbmm_(taps[j].expand(B, -1, -1), x[..., j * dilation : j * dilation + n])
        return out
    xb = x.transpose(0, 1)  # [C, B, T]; for one stream each tap's columns below are a view

    def cols(j: int) -> torch.Tensor:
        return xb[:, :, j * dilation : j * dilation + n].reshape(C, B * n)

    out = (
        torch.mm(taps[0], cols(0)) if bias is None else torch.addmm(bias[:, None], taps[0], cols(0))
    )
    for j in range(1, k):
        out.addmm_(taps[j], cols(j))
    return out.view(taps.shape[1], B, n).transpose(0, 1).contiguous()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight.T + bias``: ``x [..., K]``, ``weight [M, K]``, ``bias [M]`` -> ``[..., M]``."""
    return torch.nn.functional.linear(x, weight, bias)
