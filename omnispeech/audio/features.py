"""The 128-bin Whisper-style log-mel front end of Qwen3-Omni and Qwen3-ASR.

The features equal those of ``transformers.WhisperFeatureExtractor(feature_size=128,
sampling_rate=16000, hop_length=160, n_fft=400)`` (its torch path):

1. STFT: periodic Hann window of 400 samples, hop 160, centred frames (reflect padding of 200
   samples each side), power ``|X|^2``; the last STFT frame is dropped, so ``S`` samples make
   ``S // 160`` frames. Frame ``i`` is centred at sample ``160 * i``.
2. Slaney-style mel filter bank (Slaney mel scale, Slaney area normalisation), 0-8000 Hz.
3. ``log10(max(mel, 1e-10))``.
4. Dynamic-range floor per audio: ``max(x, x.max() - 8)`` (80 dB below the loudest bin).
5. ``(x + 4) / 4``.

:class:`StreamingLogMel` makes the same frames incrementally from pieces of audio.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from omnispeech.errors import EmptyAudioError, InputError, InvalidAudioError

SAMPLE_RATE = 16000  # Hz; every Whisper-family front end (and Qwen3-Omni's) runs at 16 kHz.
N_FFT = 400  # 25 ms window at 16 kHz -> N_FFT // 2 + 1 = 201 frequency bins.
HOP_LENGTH = 160  # 10 ms at 16 kHz -> 100 frames/s.
N_MELS = 128  # Qwen3-Omni / Qwen3-ASR (like Whisper large-v3) use 128 bins; older Whisper 80.

_PAD = N_FFT // 2  # centred frames: 200 samples of reflect padding on each side.
_LOG_EPS = 1e-10  # clamp before log10: silence maps to -10 instead of -inf.
_DYNAMIC_RANGE = 8.0  # log10 power units, i.e. 80 dB kept below the loudest bin.
_MAX_FREQ = SAMPLE_RATE / 2  # the filters span 0 Hz to Nyquist (8 kHz).


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.atleast_1d(np.asarray(hz, dtype=np.float64))
    mel = 3.0 * hz / 200.0
    log_step = math.log(6.4) / 27.0  # 27 mel per factor 6.4 in frequency above 1 kHz
    above = hz >= 1000.0
    mel[above] = 15.0 + np.log(hz[above] / 1000.0) / log_step
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    mel = np.atleast_1d(np.asarray(mel, dtype=np.float64))
    hz = 200.0 * mel / 3.0
    log_step = math.log(6.4) / 27.0
    above = mel >= 15.0  # 15 mel == 1 kHz, the knee of the Slaney scale
    hz[above] = 1000.0 * np.exp(log_step * (mel[above] - 15.0))
    return hz


@functools.lru_cache(maxsize=32)
def slaney_mel_filters(
    n_mels: int, n_fft: int, sample_rate: int, f_max: float | None = None
) -> np.ndarray:
    """Slaney mel filters (Slaney scale and area normalisation) over ``0 .. f_max`` Hz.

    Computed in float64 once per setting and cached (the array is read-only).

    Args:
        n_mels: number of triangular filters.
        n_fft: FFT length; the filters cover its ``n_fft // 2 + 1`` bins.
        sample_rate: Hz.
        f_max: top edge in Hz (default: Nyquist).

    Returns:
        ``[n_mels, n_fft // 2 + 1]`` float64 weights; ``filters @ power`` gives the mel power.
    """
    if n_mels < 1 or n_fft < 2:
        raise InputError(f"n_mels and n_fft must be positive, got {n_mels}, {n_fft}")
    nyquist = sample_rate / 2
    top = nyquist if f_max is None else min(f_max, nyquist)
    fft_freqs = np.linspace(0.0, nyquist, n_fft // 2 + 1)
    # n_mels + 2 edges evenly spaced in mel: filter m rises from edge m to m+1, falls to m+2.
    low, high = _hz_to_mel(np.array([0.0, top]))
    edges = _mel_to_hz(np.linspace(low, high, n_mels + 2))
    widths = np.diff(edges)  # [n_mels + 1]
    rise = (fft_freqs[None, :] - edges[:-2, None]) / widths[:-1, None]
    fall = (edges[2:, None] - fft_freqs[None, :]) / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(rise, fall))
    # Slaney area normalisation: each triangle has unit area in Hz, so wide high-frequency
    # filters do not dominate the energy.
    filters *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    filters.setflags(write=False)
    return filters


def mel_filter_bank(n_mels: int = N_MELS) -> np.ndarray:
    """Slaney mel filters over 0-8000 Hz for a 400-point FFT at 16 kHz: ``[n_mels, 201]``."""
    return slaney_mel_filters(n_mels, N_FFT, SAMPLE_RATE, _MAX_FREQ)


@functools.lru_cache(maxsize=16)
def _torch_constants(n_mels: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 filters ``[n_mels, 201]``, periodic Hann window ``[400]``) on ``device``."""
    # The reference casts the float64 filters to float32 and multiplies in float32; doing the
    # same gives ~1e-6 agreement, where a float64 product would differ by rounding instead.
    # Made outside inference mode even when first asked for inside it: the cached tensors also
    # serve features that gradients flow through (training losses), which inference tensors
    # cannot.
    with torch.inference_mode(False):
        filters = torch.from_numpy(np.array(mel_filter_bank(n_mels))).to(device, torch.float32)
        window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float32, device=device)
    return filters, window


def _reflect_indices(start: int, stop: int, length: int, device: torch.device) -> torch.Tensor:
    """Indices of samples ``start..stop-1`` of a signal of ``length``, reflected at both ends.

    Equals torch's ``reflect`` padding when the padding is shorter than the signal and extends
    it periodically (like ``numpy.pad(mode="reflect")``) for signals of 160-200 samples, which
    torch refuses to pad by 200.
    """
    idx = torch.arange(start, stop, device=device)
    if length == 1:
        return torch.zeros_like(idx)
    period = 2 * (length - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= length, period - idx, idx)


def _raw_log_mel(padded: torch.Tensor, n_mels: int) -> torch.Tensor:
    """log10 mel power of every full frame of already padded audio, before the floor.

    Args:
        padded: ``[B, L]`` float32 samples; frame ``j`` covers ``padded[:, 160 j : 160 j + 400]``.
        n_mels: number of mel bins.

    Returns:
        ``[B, n_mels, 1 + (L - 400) // 160]`` float32.
    """
    filters, window = _torch_constants(n_mels, str(padded.device))
    spec = torch.stft(
        padded, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True
    )  # [B, 201, frames]
    # abs() then square, as the reference does: real^2 + imag^2 rounds differently.
    power = spec.abs() ** 2
    mel = filters @ power
    return torch.clamp(mel, min=_LOG_EPS).log10()


def _finish(log_spec: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """Steps 4-5: floor at ``peak - 8`` (``peak`` broadcastable) and rescale to about [-1, 1]."""
    return (torch.maximum(log_spec, peak - _DYNAMIC_RANGE) + 4.0) / 4.0


def _as_float_tensor(audio: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Float32 tensor of ``audio`` (kept on its device), checked to be finite."""
    if isinstance(audio, np.ndarray) and not audio.flags.writeable:
        audio = audio.copy()  # torch warns on read-only arrays (e.g. memory-mapped files)
    x = torch.as_tensor(audio)
    if x.is_complex() or x.dtype == torch.bool:
        raise InvalidAudioError(f"audio must hold real samples, got dtype {x.dtype}")
    x = x.to(torch.float32)
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise InvalidAudioError("audio holds NaN or Inf samples; clean or re-decode it first")
    return x


def log_mel_spectrogram(audio: torch.Tensor | np.ndarray, n_mels: int = N_MELS) -> torch.Tensor:
    """Log-mel features of 16 kHz mono audio, equal to the Whisper feature extractor's.

    Args:
        audio: ``[S]`` or ``[B, S]`` samples at 16 kHz, in [-1, 1] (cast to float32 as is, like
            the reference, so convert integer PCM with :func:`~omnispeech.audio.prepare_audio`
            first); computed on the tensor's device. Each row gets its own dynamic-range floor.
        n_mels: number of mel bins (128 for Qwen3-Omni / Qwen3-ASR).

    Returns:
        ``[n_mels, T]`` or ``[B, n_mels, T]`` float32 with ``T = S // 160`` (100 frames/s).

    Raises:
        EmptyAudioError: ``S < 160`` (less than one 10 ms frame).
        InvalidAudioError: NaN/Inf samples or more than two dimensions.
    """
    x = _as_float_tensor(audio)
    if x.dim() not in (1, 2):
        raise InvalidAudioError(f"audio must be [S] or [B, S], got shape {tuple(x.shape)}")
    num_samples = x.shape[-1]
    if num_samples < HOP_LENGTH:
        raise EmptyAudioError(
            f"audio has {num_samples} samples; one feature frame needs at least {HOP_LENGTH} "
            f"(10 ms at {SAMPLE_RATE} Hz)"
        )
    batch = x if x.dim() == 2 else x[None]
    n_frames = num_samples // HOP_LENGTH
    # Pad only as far as the last kept frame needs: the reference's extra final STFT frame is
    # dropped anyway, and frames are computed independently, so the values are unchanged.
    stop = (n_frames - 1) * HOP_LENGTH + N_FFT - _PAD
    padded = batch[:, _reflect_indices(-_PAD, stop, num_samples, batch.device)]
    log_spec = _raw_log_mel(padded, n_mels)
    out = _finish(log_spec, log_spec.amax(dim=(-2, -1), keepdim=True))
    return out if x.dim() == 2 else out[0]


def feature_lengths(
    num_samples: int | Sequence[int] | np.ndarray | torch.Tensor, padded_length: int | None = None
) -> torch.Tensor:
    """Valid feature frames of audios zero-padded to a common length, as the reference's mask.

    The Whisper extractor's attention mask keeps every frame whose centre sample is real,
    ``ceil(L / 160)``, limited to the ``floor(L_pad / 160)`` frames the padded batch has.

    Args:
        num_samples: samples per audio ``[B]`` (an int for one audio).
        padded_length: samples after padding ``L_pad``; the longest audio when None.

    Returns:
        ``[B]`` int64 frame counts (a 0-d tensor for an int input).
    """
    lengths = torch.as_tensor(num_samples, dtype=torch.int64)
    if lengths.numel() == 0:
        return lengths
    total = int(lengths.max()) if padded_length is None else padded_length
    if int(lengths.min()) < 0 or int(lengths.max()) > total:
        raise InputError(f"lengths must lie in [0, {total}], got {lengths.tolist()}")
    ceil_frames = (lengths + HOP_LENGTH - 1) // HOP_LENGTH
    return torch.clamp(ceil_frames, max=total // HOP_LENGTH)


def batch_log_mel(
    audios: Sequence[np.ndarray | torch.Tensor], n_mels: int = N_MELS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-mel features of a batch of 16 kHz mono audios of different lengths.

    Audios are zero-padded at the end to the longest, exactly as the Whisper extractor does
    with ``padding="longest"``; the floor of each row is taken over its whole padded matrix.

    Args:
        audios: ``B`` arrays ``[S_b]``, each with at least 160 samples.
        n_mels: number of mel bins.

    Returns:
        ``(features [B, n_mels, T_max], lengths [B])`` where ``T_max = max(S_b) // 160`` and
        ``lengths`` (int64) counts the valid frames of each audio (see :func:`feature_lengths`).

    Raises:
        EmptyAudioError: an empty list, or an audio shorter than 160 samples.
        InvalidAudioError: an audio that is not 1-D or holds NaN/Inf.
    """
    if len(audios) == 0:
        raise EmptyAudioError("batch_log_mel got an empty list of audios")
    rows = [_as_float_tensor(a) for a in audios]
    for b, row in enumerate(rows):
        if row.dim() != 1:
            raise InvalidAudioError(f"audio {b} must be mono [S], got shape {tuple(row.shape)}")
        if row.shape[0] < HOP_LENGTH:
            raise EmptyAudioError(
                f"audio {b} has {row.shape[0]} samples; each needs at least {HOP_LENGTH} (10 ms)"
            )
    sizes = [row.shape[0] for row in rows]
    longest = max(sizes)
    batch = rows[0].new_zeros(len(rows), longest)
    for b, row in enumerate(rows):
        batch[b, : row.shape[0]] = row.to(batch.device)
    return log_mel_spectrogram(batch, n_mels), feature_lengths(sizes, longest)


class StreamingLogMel:
    """Incremental :func:`log_mel_spectrogram` of one 16 kHz mono stream.

    ``push`` returns the frames that no later sample can change; ``flush`` ends the stream and
    returns the rest, after which the object is reset and can take a new stream. In all,
    ``S // 160`` frames come out, as offline. Only O(``N_FFT``) samples are kept between calls.

    Frame ``i`` covers samples ``[160 i - 200, 160 i + 200)``, so it is final once sample
    ``160 i + 199`` has arrived, and the first frames (which reflect samples 1..200 at the
    start) once sample 200 has. Frames whose window passes the end of the stream need the
    right reflect padding of the real end and wait for ``flush``.

    Dynamic-range floor: offline clamps every value at ``max - 8`` with the maximum of the whole
    audio; a stream cannot know the future, so it uses the maximum of the frames produced so
    far (including those of the current call). The output therefore equals the offline one
    (within float32 rounding, <= 1e-5) exactly when no value lies below ``global max - 8`` in a
    frame produced before the global maximum appeared: always when the audio's dynamic range is
    within 80 dB (e.g. Gaussian noise, most speech recordings), or when its loudest frame comes
    in the first call. Otherwise the early frames keep quieter values than offline would.

    Args:
        n_mels: number of mel bins.
    """

    def __init__(self, n_mels: int = N_MELS) -> None:
        mel_filter_bank(n_mels)  # validate n_mels now rather than at the first frame
        self.n_mels = n_mels
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next ``push`` starts a new one."""
        # Before 201 samples: the raw samples. After: the reflect-padded stream ``xp`` (raw
        # sample s at position s + 200) from position ``_start`` on.
        self._buf = np.zeros(0, dtype=np.float32)
        self._start = 0
        self._padded = False
        self._num_samples = 0
        self._next_frame = 0
        self._peak = -math.inf

    @property
    def num_samples(self) -> int:
        """Samples pushed since the last reset."""
        return self._num_samples

    @property
    def num_frames(self) -> int:
        """Frames returned since the last reset."""
        return self._next_frame

    def push(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Add samples and return the frames that became final.

        Args:
            samples: ``[S_piece]`` 16 kHz mono samples, any length (0 included).

        Returns:
            ``[n_mels, t]`` float32 frames, ``t >= 0``, continuing the previous ones.

        Raises:
            InvalidAudioError: NaN/Inf samples or not 1-D.
        """
        x = _as_float_tensor(samples)
        if x.dim() != 1:
            raise InvalidAudioError(f"samples must be mono [S], got shape {tuple(x.shape)}")
        self._buf = np.concatenate([self._buf, x.cpu().numpy()])
        self._num_samples += x.shape[0]
        if not self._padded:
            if self._num_samples <= _PAD:
                return self._empty()
            # Sample 200 exists: the left reflect padding (samples 200..1) can be formed.
            self._buf = np.concatenate([self._buf[_PAD:0:-1], self._buf])
            self._padded = True
        # Frame i ends at padded position 160 i + 400, i.e. needs raw sample 160 i + 199.
        stop_frame = (self._num_samples - _PAD) // HOP_LENGTH + 1
        return self._emit(self._buf, stop_frame)

    def flush(self) -> torch.Tensor:
        """End the stream: return its last frames (those that needed the end's padding).

        Returns:
            ``[n_mels, t]`` float32 frames; after them ``S // 160`` frames have come out in all
            (none for a stream of fewer than 160 samples). The object is then reset.
        """
        try:
            total_frames = self._num_samples // HOP_LENGTH
            if total_frames <= self._next_frame:
                return self._empty()
            if not self._padded:
                # 160-200 samples: too short for a plain reflection, but all are in the buffer.
                n = self._num_samples
                buf = self._buf[_reflect_indices(-_PAD, n + _PAD, n, torch.device("cpu")).numpy()]
            else:
                # Right padding: samples S-2 .. S-201, the reflection of the real end.
                buf = np.concatenate([self._buf, self._buf[-2 : -_PAD - 2 : -1]])
            return self._emit(buf, total_frames)
        finally:
            self.reset()

    def _emit(self, padded: np.ndarray, stop_frame: int) -> torch.Tensor:
        """Frames ``_next_frame .. stop_frame - 1`` of ``padded`` (which starts at ``_start``)."""
        first = self._next_frame
        if stop_frame <= first:
            return self._empty()
        lo = first * HOP_LENGTH - self._start
        hi = (stop_frame - 1) * HOP_LENGTH + N_FFT - self._start
        log_spec = _raw_log_mel(torch.from_numpy(padded[lo:hi].copy())[None], self.n_mels)[0]
        self._peak = max(self._peak, float(log_spec.max()))
        self._next_frame = stop_frame
        # Keep what the next frame needs and the last 201 raw samples (for the right padding).
        keep_from = min(stop_frame * HOP_LENGTH, self._num_samples - 1)
        if keep_from > self._start:
            # copy(): a view would keep the whole (possibly long) pushed piece alive.
            self._buf = self._buf[keep_from - self._start :].copy()
            self._start = keep_from
        return _finish(log_spec, torch.tensor(self._peak, dtype=torch.float32))

    def _empty(self) -> torch.Tensor:
        return torch.zeros(self.n_mels, 0)
