"""Signal quality of degraded or reconstructed audio against a clean reference.

* :func:`pesq_wb`: ITU-T P.862.2 wide-band PESQ (MOS-LQO, about 1.0 to 4.64; higher is
  better), computed at 16 kHz.
* :func:`stoi`: short-time objective intelligibility (0 to 1; higher is better).
* :func:`mel_distance`: the multi-scale log-mel L1 distance of
  :mod:`omnispeech.audio.spectral` (0 = identical; lower is better).

PESQ and STOI come from the optional ``pesq`` and ``pystoi`` packages
(``pip install 'omnispeech[eval]'``); they are imported only when called.

Both signals are resampled to the metric's rate (16 kHz for PESQ-WB), downmixed to mono and cut
to the shorter of the two: these measures compare time-aligned signals and say nothing useful
about audio of a different length, so align first when the lengths differ by more than a few
milliseconds.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings

import numpy as np
import torch

from omnispeech.audio import mel_distance as _mel_distance
from omnispeech.audio import prepare_audio
from omnispeech.errors import DependencyError, InputError

# PESQ-WB is defined at 16 kHz only (P.862.2).
PESQ_RATE = 16_000
# PESQ needs at least a quarter second of signal to find an utterance in.
_MIN_PESQ_SECONDS = 0.25

Audio = np.ndarray | torch.Tensor


def signal_metrics_available() -> bool:
    """Whether the optional ``pesq`` and ``pystoi`` packages are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("pesq", "pystoi"))


def _pair(
    reference: Audio, degraded: Audio, sample_rate: int, target_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as float64 mono at ``target_rate``, cut to the shorter one."""
    ref = prepare_audio(reference, sample_rate, target_rate).astype(np.float64)
    deg = prepare_audio(degraded, sample_rate, target_rate).astype(np.float64)
    n = min(ref.shape[0], deg.shape[0])
    return ref[:n], deg[:n]


def pesq_wb(reference: Audio, degraded: Audio, sample_rate: int) -> float:
    """Wide-band PESQ of ``degraded`` against ``reference``.

    Args:
        reference: clean audio, ``[S]`` (or ``[C, S]``, downmixed) at ``sample_rate`` Hz.
        degraded: the audio to score, same layout and rate.
        sample_rate: Hz; resampled to 16 kHz when different.

    Returns:
        MOS-LQO, about 1.0 (bad) to 4.64 (identical).

    Raises:
        DependencyError: ``pesq`` is not installed.
        InputError: less than 0.25 s of audio, or a reference without any utterance (silence).
    """
    try:
        from pesq import pesq
    except ImportError:
        raise DependencyError("PESQ needs pesq: pip install 'omnispeech[eval]'") from None
    ref, deg = _pair(reference, degraded, sample_rate, PESQ_RATE)
    if ref.shape[0] < _MIN_PESQ_SECONDS * PESQ_RATE:
        raise InputError(
            f"PESQ needs at least {_MIN_PESQ_SECONDS} s of audio, got {ref.shape[0] / PESQ_RATE} s"
        )
    try:
        return float(pesq(PESQ_RATE, ref, deg, "wb"))
    except Exception as exc:  # the C library's errors (no utterance found, ...) are bare types
        raise InputError(f"PESQ cannot score this audio: {type(exc).__name__}: {exc}") from None


def stoi(reference: Audio, degraded: Audio, sample_rate: int, extended: bool = False) -> float:
    """Short-time objective intelligibility of ``degraded`` against ``reference``.

    Args:
        reference: clean audio, ``[S]`` at ``sample_rate`` Hz.
        degraded: the audio to score, same rate.
        sample_rate: Hz (pystoi resamples to its internal 10 kHz).
        extended: ESTOI (better for fluctuating noise) instead of STOI.

    Returns:
        Intelligibility from 0 to 1 (1 = identical).

    Raises:
        DependencyError: ``pystoi`` is not installed.
        InputError: audio shorter than STOI's 30-frame (about 0.4 s) analysis window.
    """
    try:
        from pystoi import stoi as _stoi
    except ImportError:
        raise DependencyError("STOI needs pystoi: pip install 'omnispeech[eval]'") from None
    ref, deg = _pair(reference, degraded, sample_rate, sample_rate)
    if ref.shape[0] < 0.4 * sample_rate:
        raise InputError(f"STOI needs at least 0.4 s of audio, got {ref.shape[0] / sample_rate} s")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_stoi(ref, deg, sample_rate, extended=extended))
    # pystoi warns and returns 1e-5 when too few non-silent frames are left to score; that is
    # no measurement, so it is refused rather than averaged in.
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        raise InputError("STOI: too little non-silent audio to score (needs about 0.4 s)")
    return value


def mel_distance(reference: Audio, degraded: Audio, sample_rate: int) -> float:
    """Multi-scale log-mel L1 distance (0 = identical; speech against near-silence is ~1.9).

    Args:
        reference: ``[S]`` at ``sample_rate`` Hz.
        degraded: ``[S']`` at the same rate; the longer is cut to the shorter.
        sample_rate: Hz.
    """
    ref, deg = _pair(reference, degraded, sample_rate, sample_rate)
    return _mel_distance(torch.from_numpy(deg).float(), torch.from_numpy(ref).float(), sample_rate)


@dataclasses.dataclass(frozen=True)
class SignalScore:
    """Signal measures of one degraded signal.

    Attributes:
        mel_distance: multi-scale log-mel L1 distance (lower is better).
        pesq_wb: wide-band PESQ (higher is better), None when ``pesq`` is not installed.
        stoi: STOI (higher is better), None when ``pystoi`` is not installed.
    """

    mel_distance: float
    pesq_wb: float | None = None
    stoi: float | None = None


def signal_scores(
    reference: Audio, degraded: Audio, sample_rate: int, require: bool = False
) -> SignalScore:
    """All signal measures of ``degraded`` against ``reference``.

    Args:
        reference: clean audio ``[S]`` at ``sample_rate`` Hz.
        degraded: audio to score at the same rate.
        sample_rate: Hz.
        require: raise :class:`DependencyError` when PESQ / STOI are not installed instead of
            leaving them None.
    """
    distance = mel_distance(reference, degraded, sample_rate)
    if not (require or signal_metrics_available()):
        return SignalScore(distance)
    return SignalScore(
        distance,
        pesq_wb(reference, degraded, sample_rate),
        stoi(reference, degraded, sample_rate),
    )
