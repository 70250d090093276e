"""Reading, checking and writing audio: files and in-memory arrays -> float32 mono ``[S]``.

Every function returns 16 kHz (or the requested rate) mono float32 and raises only typed
errors (:mod:`omnispeech.errors`), never a raw soundfile / libsndfile exception:

* :class:`AudioFileError`: a missing path, or a file soundfile cannot decode;
* :class:`EmptyAudioError`: audio with no samples;
* :class:`InvalidAudioError`: NaN / Inf samples, or an array of a shape that is not audio.

Multi-channel audio is downmixed by the mean of the channels, then resampled with soxr
(quality ``"HQ"``); downmixing first resamples one channel instead of C, with the same result
since both steps are linear.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from omnispeech.errors import (
    AudioFileError,
    EmptyAudioError,
    InputError,
    InvalidAudioError,
)

_QUALITY = "HQ"  # soxr's high quality: 20-bit precision, ~95 % bandwidth, fast enough for ASR
_MAX_CHANNELS = 8  # 7.1 surround; a wider "channel" axis is taken as a shape error
_READABLE = "not a readable audio file (wav/flac/ogg)"


def _check_rate(sample_rate: int, name: str = "sample_rate") -> int:
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
        raise InputError(f"{name} must be a positive integer (Hz), got {sample_rate!r}")
    return int(sample_rate)


def _info(path: str | Path) -> tuple[Path, int, int]:
    """Check that ``path`` is an audio file with samples; (path, frames, rate) from its header."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if not path.is_file():
        raise AudioFileError(f"{path}: is a directory, not an audio file")
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, ValueError) as err:
        # `from None`: the libsndfile traceback adds nothing to the message below.
        raise AudioFileError(f"{path}: {_READABLE}: {err}") from None
    if info.frames == 0:
        raise EmptyAudioError(f"{path}: the file holds no samples")
    return path, info.frames, info.samplerate


def _check_finite(x: np.ndarray, where: str) -> None:
    if not np.isfinite(x).all():
        raise InvalidAudioError(f"{where}: audio holds NaN or Inf samples")


def _resample(x: np.ndarray, rate: int, target_rate: int, where: str) -> np.ndarray:
    if rate == target_rate:
        return x
    y = np.asarray(soxr.resample(x, rate, target_rate, quality=_QUALITY), dtype=np.float32)
    if y.shape[0] == 0:
        # e.g. 1 sample at 44.1 kHz: under half a sample at 16 kHz.
        raise EmptyAudioError(f"{where}: {x.shape[0]} samples at {rate} Hz resample to none")
    return y


def _downmix(x: np.ndarray) -> np.ndarray:
    """``[S, C]`` -> float32 mono ``[S]``: the channel mean (the only channel for mono)."""
    if x.shape[1] == 1:
        return np.ascontiguousarray(x[:, 0], dtype=np.float32)
    return x.mean(axis=1, dtype=np.float32)


def _as_float_array(wav: np.ndarray | torch.Tensor) -> np.ndarray:
    """A float numpy view of ``wav``; signed integer PCM is scaled so full scale is 1.0."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu()
        # numpy has no bfloat16; other floats convert directly.
        wav = (wav.float() if wav.is_floating_point() else wav).numpy()
    x = np.asarray(wav)
    if np.issubdtype(x.dtype, np.signedinteger):
        # e.g. int16: 32768 -> 1.0, as soundfile reads PCM_16 files.
        return x.astype(np.float32) / float(2 ** (8 * x.dtype.itemsize - 1))
    if not np.issubdtype(x.dtype, np.floating):
        raise InvalidAudioError(f"audio must be float or signed integer PCM, got dtype {x.dtype}")
    return x


def _channels_last(x: np.ndarray) -> np.ndarray:
    """Apply :func:`prepare_audio`'s shape rule: ``[S, C]`` (``[S, 1]`` for mono)."""
    if x.ndim not in (1, 2):
        raise InvalidAudioError(f"audio must be [S], [C, S] or [S, C], got shape {x.shape}")
    if x.size == 0:
        raise EmptyAudioError(f"audio has no samples (shape {x.shape})")
    if x.ndim == 1:
        return x[:, None]
    rows, cols = x.shape
    if rows <= _MAX_CHANNELS and rows < cols:
        return x.T  # [C, S], channels first (torchaudio)
    if cols <= _MAX_CHANNELS and cols < rows:
        return x  # [S, C], channels last (soundfile)
    raise InvalidAudioError(
        f"cannot tell channels from samples in shape {x.shape}: a 2-D array must be "
        f"[C, S] or [S, C] with C <= {_MAX_CHANNELS} channels and C < S"
    )


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Read an audio file as float32 mono at ``sample_rate``.

    Args:
        path: a file soundfile can decode (wav, flac, ogg/vorbis, ...).
        sample_rate: output rate in Hz; the file is resampled with soxr when its rate differs.

    Returns:
        ``[S]`` float32 samples (channel mean for multi-channel files).

    Raises:
        AudioFileError: missing or undecodable file.
        EmptyAudioError: a file with no samples.
        InvalidAudioError: NaN / Inf samples (possible in float wav files).
    """
    sample_rate = _check_rate(sample_rate)
    path, _, _ = _info(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError) as err:
        raise AudioFileError(f"{path}: {_READABLE}: {err}") from None
    if data.shape[0] == 0:
        raise EmptyAudioError(f"{path}: the file holds no samples")
    _check_finite(data, str(path))
    return _resample(_downmix(data), rate, sample_rate, str(path))


def prepare_audio(
    wav: np.ndarray | torch.Tensor, sample_rate: int, target_rate: int = 16000
) -> np.ndarray:
    """Validate, downmix and resample an in-memory waveform.

    Shape rule: ``[S]`` is mono; a 2-D array holds its channels along its SHORTER axis, which
    must have at most 8 entries. So ``[2, 48000]`` is channels first (torchaudio's layout) and
    ``[48000, 2]`` channels last (soundfile's); a square array, or one whose axes are both
    longer than 8, is rejected rather than guessed.

    Args:
        wav: samples as float (any precision) or signed integer PCM (scaled so full scale is 1).
        sample_rate: rate of ``wav`` in Hz.
        target_rate: output rate in Hz.

    Returns:
        ``[S']`` float32 mono samples at ``target_rate``.

    Raises:
        EmptyAudioError: no samples.
        InvalidAudioError: NaN / Inf samples, an unsupported dtype, or an ambiguous shape.
    """
    sample_rate = _check_rate(sample_rate)
    target_rate = _check_rate(target_rate, "target_rate")
    x = _channels_last(_as_float_array(wav))
    _check_finite(x, "prepare_audio")
    return _resample(_downmix(x), sample_rate, target_rate, "prepare_audio")


def iter_audio_blocks(
    path: str | Path, block_seconds: float, sample_rate: int = 16000
) -> Iterator[np.ndarray]:
    """Read a long audio file block by block, as float32 mono at ``sample_rate``.

    Only one block of the file is in memory at a time; the resampler (a ``soxr.ResampleStream``)
    carries its state across blocks, so the concatenated blocks have the length of
    :func:`load_audio`'s output and its values (identical in the tests: soxr's one-shot resampler
    streams the same way; the tests allow 1e-5 for other soxr builds).

    The file is checked when this function is called (missing, undecodable or empty files raise
    here); NaN / Inf samples raise when the block holding them is read.

    Args:
        path: an audio file soundfile can decode.
        block_seconds: duration of each block read from the file, in seconds (> 0). The
            resampled blocks have about ``block_seconds * sample_rate`` samples; a block may be
            shorter (the resampler's delay, the file's end) but is never empty.
        sample_rate: output rate in Hz.

    Returns:
        An iterator over ``[s]`` float32 blocks.

    Raises:
        AudioFileError, EmptyAudioError, InvalidAudioError: as :func:`load_audio`.
    """
    sample_rate = _check_rate(sample_rate)
    if not block_seconds > 0:
        raise InputError(f"block_seconds must be positive, got {block_seconds!r}")
    path, _, rate = _info(path)
    block_frames = max(1, round(block_seconds * rate))
    return _blocks(path, block_frames, rate, sample_rate)


def iter_quiet_segments(
    path: str | Path, segment_seconds: float, sample_rate: int = 16000
) -> Iterator[np.ndarray]:
    """Cut a long file into segments of at most ``segment_seconds``, each ending at the
    quietest 100 ms of its last quarter (so cuts fall between words, not inside them).

    The file is read block by block (:func:`iter_audio_blocks`), so memory holds one segment.
    The segments, concatenated, are the whole file.

    Args:
        path: an audio file soundfile can decode.
        segment_seconds: the longest segment, in seconds (at least 0.4).
        sample_rate: output rate in Hz.

    Returns:
        An iterator over ``[s]`` float32 segments at ``sample_rate``.

    Raises:
        AudioFileError, EmptyAudioError, InvalidAudioError: as :func:`load_audio`.
    """
    frame = _check_rate(sample_rate) // 10  # 100 ms energy frames
    limit = int(segment_seconds * sample_rate)
    if limit < 4 * frame:
        raise InputError(f"segment_seconds must be at least 0.4, got {segment_seconds!r}")
    return _quiet_segments(iter_audio_blocks(path, 1.0, sample_rate), limit, frame)


def _quiet_segments(blocks: Iterator[np.ndarray], limit: int, frame: int) -> Iterator[np.ndarray]:
    """The generator behind :func:`iter_quiet_segments` (arguments already checked)."""
    buffer = np.zeros(0, dtype=np.float32)
    for block in blocks:
        buffer = np.concatenate([buffer, block])
        while buffer.shape[0] >= limit:
            search_from = (limit * 3 // 4) // frame
            energies = [
                float(np.square(buffer[i * frame : (i + 1) * frame]).sum())
                for i in range(search_from, limit // frame)
            ]
            cut = (search_from + int(np.argmin(energies))) * frame + frame // 2
            yield buffer[:cut]
            buffer = buffer[cut:]
    if buffer.shape[0]:
        yield buffer


def _blocks(path: Path, block_frames: int, rate: int, sample_rate: int) -> Iterator[np.ndarray]:
    """The generator behind :func:`iter_audio_blocks` (arguments already checked)."""
    stream = None
    if rate != sample_rate:
        stream = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality=_QUALITY)
    total = 0  # samples read from the file
    produced = 0  # samples yielded
    try:
        f = sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError, ValueError) as err:
        raise AudioFileError(f"{path}: {_READABLE}: {err}") from None
    with f:
        while True:
            try:
                data = f.read(block_frames, dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError, ValueError) as err:
                raise AudioFileError(f"{path}: {_READABLE}: {err}") from None
            # A short read means the end of the file: flush the resampler's delay line.
            last = data.shape[0] < block_frames
            _check_finite(data, f"{path} (block at {total / rate:.2f} s)")
            total += data.shape[0]
            mono = _downmix(data)
            if stream is not None:
                mono = stream.resample_chunk(mono, last=last)
            if mono.shape[0]:
                produced += mono.shape[0]
                yield np.ascontiguousarray(mono, dtype=np.float32)
            if last:
                break
    if produced == 0:
        raise EmptyAudioError(f"{path}: {total} samples at {rate} Hz resample to none")


def change_speed(wav: np.ndarray, factor: float, sample_rate: int = 16000) -> np.ndarray:
    """``wav`` ``[T]`` played ``factor`` times faster (and higher): ``[~T / factor]`` samples at
    the same ``sample_rate``, by resampling (soxr's default quality)."""
    return np.asarray(soxr.resample(wav, sample_rate * factor, sample_rate), dtype=np.float32)


def audio_duration(path: str | Path) -> float:
    """Duration of an audio file in seconds, from its header (nothing is decoded).

    Raises:
        AudioFileError: missing or undecodable file.
        EmptyAudioError: a file with no samples.
    """
    _, frames, rate = _info(path)
    return frames / rate


def save_audio(
    path: str | Path,
    wav: np.ndarray | torch.Tensor,
    sample_rate: int,
    subtype: str = "PCM_16",
) -> None:
    """Write audio to a file; the format follows the extension (``.wav``, ``.flac``, ``.ogg``).

    Args:
        path: destination file (its folder must exist).
        wav: ``[S]`` mono, or 2-D multi-channel by :func:`prepare_audio`'s shape rule; float
            samples in [-1, 1] (PCM subtypes clip values outside, rather than wrap around).
        sample_rate: rate of ``wav`` in Hz.
        subtype: soundfile subtype, e.g. ``"PCM_16"`` (default), ``"PCM_24"``, ``"FLOAT"``;
            ``"VORBIS"`` for ``.ogg``.

    Raises:
        AudioFileError: the file cannot be written (missing folder, bad format or subtype).
        EmptyAudioError, InvalidAudioError: as :func:`prepare_audio`.
    """
    sample_rate = _check_rate(sample_rate)
    x = _channels_last(_as_float_array(wav))
    _check_finite(x, "save_audio")
    x = np.asarray(x, dtype=np.float32)
    if subtype.upper().startswith("PCM"):
        x = np.clip(x, -1.0, 1.0)
    try:
        sf.write(str(path), x, sample_rate, subtype=subtype)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as err:
        raise AudioFileError(f"{path}: cannot write audio: {err}") from None
