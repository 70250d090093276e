"""The CTC prefix recursion of joint decoding, compiled by Numba.

It is sequential over the encoder steps; written as NumPy calls per step it cost as much as
the decoder's own step (joint decoding took 1.8x the time of the decoder alone). This module
is imported on the first joint decoding, not with the pipeline, so that loading a model does
not wait for Numba; ``cache=True`` keeps the machine code on disk for later processes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from omnispeech.pipelines.asr_joint import NEG


@njit(cache=True)
def _logaddexp(a: float, b: float) -> float:  # pragma: no cover - compiled
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


@njit(cache=True)
def extend(  # noqa: PLR0913 - the recursion's inputs and outputs, all arrays
    x: np.ndarray,
    blank: np.ndarray,
    phi: np.ndarray,
    first: bool,
    r_n: np.ndarray,
    r_b: np.ndarray,
    psi: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Extend a prefix by each of ``k`` labels (see :mod:`omnispeech.pipelines.asr_joint`).

    Args:
        x: ``[T, k]`` log-probabilities of the labels at every encoder step.
        blank: ``[T]`` log-probabilities of the blank.
        phi: ``[T, k]`` log-probability that steps ``0..t`` emit the prefix in a way the label
            may follow (through a blank when it repeats the prefix's last label).
        first: the prefix is empty.
        r_n: out ``[T, k]``, the extended prefix emitted by steps ``0..t``, ending in its label.
        r_b: out ``[T, k]``, the same ending in a blank.
        psi: out ``[k]``, log prefix probability of each extension.
    """
    T, k = x.shape
    for j in range(k):
        rn = x[0, j] if first else NEG
        rb = NEG
        p = rn
        r_n[0, j] = rn
        r_b[0, j] = rb
        for t in range(1, T):
            # Both updates read the values of step t - 1.
            rn, rb = (
                _logaddexp(rn, phi[t - 1, j]) + x[t, j],
                _logaddexp(rb, rn) + blank[t],
            )
            p = _logaddexp(p, phi[t - 1, j] + x[t, j])
            r_n[t, j] = rn
            r_b[t, j] = rb
        psi[j] = p
