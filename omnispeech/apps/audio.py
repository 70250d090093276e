"""Audio bytes in and out of the apps: uploads to samples, samples to wav / pcm / flac bytes.

Speech leaves the server as 16-bit PCM. ``pcm`` is the raw samples (little-endian, mono, at
the model's rate: 24 kHz for the 12 Hz TTS models). ``wav`` streams: its header is sent before
the length is known, with the RIFF and data sizes set to 0xFFFFFFFF ("until the end of the
stream"), as streaming speech APIs do; readers such as libsndfile take the data to run to the
end of the file. ``flac`` cannot stream this way (its header holds the total length), so it is
encoded once the speech is complete.
"""

from __future__ import annotations

import io
import struct

import numpy as np

from omnispeech.errors import AudioFileError, EmptyAudioError

# response_format values: streamed as made, or encoded at the end.
STREAMED_FORMATS = ("wav", "pcm")
FORMATS = (*STREAMED_FORMATS, "flac")
MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac"}

_UNKNOWN_SIZE = 0xFFFFFFFF  # RIFF / data chunk size of a wav stream whose length is unknown


def pcm16(samples: np.ndarray) -> bytes:
    """``[n]`` float samples in [-1, 1] -> ``2n`` bytes of little-endian 16-bit PCM."""
    x = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return (np.round(x * 32767.0)).astype("<i2").tobytes()


def wav_header(sample_rate: int, data_bytes: int | None = None) -> bytes:
    """The 44-byte header of a mono 16-bit PCM wav file.

    Args:
        sample_rate: samples per second (Hz).
        data_bytes: size of the PCM data that follows, or None for a stream of unknown
            length (sizes 0xFFFFFFFF).
    """
    data = _UNKNOWN_SIZE if data_bytes is None else data_bytes
    riff = _UNKNOWN_SIZE if data_bytes is None else 36 + data_bytes
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, 2 * sample_rate, 2, 16)  # PCM, mono, 16 bit
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data)
    )


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """A whole utterance ``[n]`` (float, 24 kHz) as ``wav``, ``pcm`` or ``flac`` bytes."""
    if fmt == "pcm":
        return pcm16(samples)
    if fmt == "wav":
        body = pcm16(samples)
        return wav_header(sample_rate, len(body)) + body
    if fmt == "flac":
        import soundfile as sf

        buffer = io.BytesIO()
        # The same 16-bit samples as wav / pcm (libsndfile's own float conversion rounds
        # differently), so every format carries identical audio.
        x = np.frombuffer(pcm16(samples), dtype="<i2")
        sf.write(buffer, x, sample_rate, format="FLAC", subtype="PCM_16")
        return buffer.getvalue()
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def decode_audio(data: bytes, target_rate: int, name: str = "upload") -> np.ndarray:
    """Uploaded bytes (wav, flac, ogg, ... as soundfile reads them) -> ``[S]`` float32 mono.

    Args:
        data: the file's bytes.
        target_rate: output rate in Hz (the file is resampled when it differs).
        name: how the file is called in error messages.

    Raises:
        EmptyAudioError: zero bytes, or a file with no samples.
        AudioFileError: bytes that are not an audio file soundfile can decode.
        InvalidAudioError: NaN / Inf samples.
    """
    import soundfile as sf

    from omnispeech.audio import prepare_audio

    if not data:
        raise EmptyAudioError(f"{name}: the file is empty (0 bytes)")
    try:
        wav, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError):
        # soundfile's own message names the in-memory buffer, which tells the user nothing.
        raise AudioFileError(
            f"{name}: not an audio file that can be decoded (send wav, flac or ogg)"
        ) from None
    if wav.shape[0] == 0:
        raise EmptyAudioError(f"{name}: the file holds no samples")
    return prepare_audio(wav, int(rate), target_rate)


def decode_pcm16(data: bytes) -> np.ndarray:
    """Little-endian 16-bit PCM bytes -> ``[n]`` float32 in [-1, 1) (an odd last byte is an
    error: the sender split a sample)."""
    if len(data) % 2:
        raise AudioFileError(f"PCM16 audio must be an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
