"""omnispeech.audio: file/array input and the Whisper-style log-mel (offline and streaming).

The reference is ``transformers.WhisperFeatureExtractor`` (imported inside tests only).
Measured on CPU (torch 2.13): the single-audio and batch features match it to 6e-8 (often
bit-exactly), the filter bank to 0.0, and streaming matches offline to 6e-8.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omnispeech.audio import (
    HOP_LENGTH,
    N_MELS,
    StreamingLogMel,
    audio_duration,
    batch_log_mel,
    feature_lengths,
    iter_audio_blocks,
    load_audio,
    log_mel_spectrogram,
    mel_filter_bank,
    prepare_audio,
    save_audio,
)
from omnispeech.errors import AudioFileError, EmptyAudioError, InputError, InvalidAudioError


def noise(n: int, seed: int = 0, scale: float = 0.1) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def speech_like(n: int, seed: int = 0) -> np.ndarray:
    """Noise under a syllable-rate envelope, with stretches of exact silence (floor active)."""
    t = np.arange(n) / 16000
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0.0, None) ** 2
    x = noise(n, seed, 0.3) * envelope.astype(np.float32)
    x[n // 3 : n // 2] = 0.0
    return x


@pytest.fixture(scope="module")
def fe():
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400, padding_value=0.0
    )


def reference(fe, audios: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    out = fe(
        audios,
        sampling_rate=16000,
        padding="longest",
        return_attention_mask=True,
        return_tensors="pt",
    )
    return out.input_features, out.attention_mask.sum(-1)


# -- offline log-mel --------------------------------------------------------------------------
def test_mel_filter_bank_matches_reference(fe):
    ours = mel_filter_bank(128)
    assert ours.shape == (128, 201)
    np.testing.assert_array_equal(ours, fe.mel_filters.T)  # measured: identical in float64


@pytest.mark.parametrize("n", [201, 401, 16000, 23456])
@pytest.mark.parametrize("kind", ["noise", "speech_like"])
def test_log_mel_matches_whisper_extractor(fe, n, kind):
    x = noise(n, seed=n) if kind == "noise" else speech_like(n, seed=n)
    ours = log_mel_spectrogram(x)
    ref, _ = reference(fe, [x])
    assert ours.shape == (N_MELS, n // HOP_LENGTH) and ours.dtype == torch.float32
    # Measured max abs diff: 0.0 except 6e-8 for n=201.
    assert (ours - ref[0]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("n", [160, 183, 200])
def test_log_mel_of_160_to_200_samples_extends_the_reflection(n):
    # torch (and so the reference) cannot reflect-pad 200 samples into <= 200; we reflect
    # periodically like numpy.pad(mode="reflect"): check against a numpy computation of that.
    x = noise(n, seed=n)
    padded = np.pad(x.astype(np.float64), 200, mode="reflect")[:400]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    power = np.abs(np.fft.rfft(padded * window)) ** 2
    log_spec = np.log10(np.maximum(mel_filter_bank(128) @ power, 1e-10))
    expected = (np.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0
    ours = log_mel_spectrogram(x)
    assert ours.shape == (128, 1)
    assert np.abs(ours[:, 0].numpy() - expected).max() <= 1e-4


def test_batch_log_mel_matches_extractor_and_its_mask(fe):
    sizes = [23456, 16000, 401, 12345, 16001, 160]
    audios = [speech_like(n, seed=i) if i % 2 else noise(n, seed=i) for i, n in enumerate(sizes)]
    feats, lengths = batch_log_mel(audios)
    ref, ref_lengths = reference(fe, audios)
    assert feats.shape == ref.shape == (len(sizes), 128, 23456 // 160)
    assert lengths.tolist() == ref_lengths.tolist()
    assert (feats - ref).abs().max().item() <= 1e-5  # measured: 0.0


def test_batch_rows_get_their_own_floor():
    quiet = noise(8000, 1, scale=1e-3)
    loud = speech_like(8000, 2) * 100
    both = log_mel_spectrogram(torch.from_numpy(np.stack([quiet, loud])))
    assert torch.equal(both[0], log_mel_spectrogram(quiet))
    assert torch.equal(both[1], log_mel_spectrogram(loud))
    floor = both[1].max() - 2.0  # 8 log10 units, scaled by 1/4: active on the silence
    assert abs(both[1].min().item() - floor.item()) <= 1e-6


def test_feature_lengths():
    # min(ceil(L / 160), floor(L_pad / 160))
    assert feature_lengths([160, 161, 320, 479, 500]).tolist() == [1, 2, 2, 3, 3]
    assert feature_lengths([161, 320], padded_length=330).tolist() == [2, 2]
    assert int(feature_lengths(16000)) == 100
    with pytest.raises(InputError):
        feature_lengths([400], padded_length=300)


def test_log_mel_errors():
    with pytest.raises(EmptyAudioError, match="160"):
        log_mel_spectrogram(np.zeros(159, np.float32))
    with pytest.raises(EmptyAudioError):
        batch_log_mel([noise(1000), noise(100)])
    bad = noise(1000)
    bad[10] = np.inf
    with pytest.raises(InvalidAudioError, match="NaN or Inf"):
        log_mel_spectrogram(bad)
    with pytest.raises(InvalidAudioError, match="shape"):
        log_mel_spectrogram(np.zeros((1, 2, 1000), np.float32))


# -- streaming log-mel ------------------------------------------------------------------------
def stream(mel: StreamingLogMel, x: np.ndarray, sizes: list[int]) -> torch.Tensor:
    out, start = [], 0
    for size in sizes:
        out.append(mel.push(x[start : start + size]))
        start += size
    assert start >= len(x)
    out.append(mel.flush())
    assert all(o.shape[0] == N_MELS for o in out)
    return torch.cat(out, dim=-1)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 20000),
    sizes=st.lists(st.integers(1, 4000), min_size=1, max_size=200),
    seed=st.integers(0, 2**16),
)
def test_streaming_equals_offline_on_noise(n, sizes, seed):
    x = noise(n, seed)
    # Cycle through the drawn sizes for at most 300 pieces (keeps the test fast), then the rest.
    pieces = [sizes[i % len(sizes)] for i in range(300)]
    done = int(np.searchsorted(np.cumsum(pieces), n))
    pieces = pieces[:done] + [max(0, n - sum(pieces[:done]))]
    mel = StreamingLogMel()
    got = stream(mel, x, pieces)
    assert got.shape == (N_MELS, n // HOP_LENGTH)
    if n >= HOP_LENGTH:
        want = log_mel_spectrogram(x)
        # Values offline lifts to its floor (global max - 80 dB) may stay lower in a stream,
        # whose floor follows the running max (documented in StreamingLogMel); even noise has
        # such values when a frame comes out alone early. Everything else is equal.
        floored = want <= want.min() + 1e-6
        assert (got - want)[~floored].abs().max().item() <= 1e-5  # measured: 6e-8
        assert (got[floored] <= want[floored] + 1e-6).all()


def test_streaming_one_sample_pieces_empty_pushes_and_reuse():
    x = speech_like(1234, 3)[::-1].copy()  # loudest part first: equal even with the floor
    mel = StreamingLogMel()
    assert mel.push(np.zeros(0, np.float32)).shape == (N_MELS, 0)
    got = stream(mel, x, [1] * len(x))
    offline = log_mel_spectrogram(x)
    assert (got - offline).abs().max().item() <= 1e-5
    assert mel.num_samples == 0  # flush reset it: the same object takes a new stream
    again = stream(mel, x, [700, 0, 534])
    assert (again - offline).abs().max().item() <= 1e-5
    mel.push(noise(500))
    mel.reset()
    assert (stream(mel, x, [1234]) - offline).abs().max().item() <= 1e-5


def test_streaming_keeps_bounded_context():
    mel = StreamingLogMel()
    for i in range(50):
        mel.push(noise(1000, i))
        assert len(mel._buf) <= 400 + 1000  # at most one window + one piece, not the history
    assert mel.num_frames == (50_000 - 200) // 160 + 1


def test_streaming_floor_uses_the_running_maximum():
    # Quiet noise, then a 100x louder part: before the loud part the stream cannot know the
    # offline floor, so early frames keep quieter values; from the loud part on it is exact.
    x = np.concatenate([noise(16000, 1, 1e-6), noise(16000, 2, 1.0)])
    mel = StreamingLogMel()
    early = mel.push(x[:16000])
    late = torch.cat([mel.push(x[16000:]), mel.flush()], dim=-1)
    offline = log_mel_spectrogram(x)
    assert (early - offline[:, : early.shape[1]]).abs().max() > 0.1
    assert (late[:, 5:] - offline[:, -late.shape[1] + 5 :]).abs().max() <= 1e-5


def test_streaming_rejects_bad_input():
    mel = StreamingLogMel()
    with pytest.raises(InvalidAudioError):
        mel.push(np.array([0.0, np.nan], np.float32))
    with pytest.raises(InvalidAudioError):
        mel.push(np.zeros((2, 10), np.float32))
    assert mel.flush().shape == (N_MELS, 0)  # fewer than 160 samples: no frame


# -- files and arrays -------------------------------------------------------------------------
def tone(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def test_load_audio_resamples_8k_to_16k(tmp_path):
    path = tmp_path / "tone8k.wav"
    sf.write(path, tone(8000, 1.0), 8000)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16000) <= 2
    assert abs(peak_hz(x, 16000) - 440.0) <= 1.0
    assert audio_duration(path) == pytest.approx(1.0)


def test_load_audio_downmixes_stereo(tmp_path):
    left, right = tone(16000, 0.5), noise(8000, 1)
    sf.write(tmp_path / "cancel.wav", np.stack([left, -left], 1), 16000)
    assert np.abs(load_audio(tmp_path / "cancel.wav")).max() <= 1e-4
    sf.write(tmp_path / "pair.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "pair.wav"), (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize("ext, subtype", [("flac", "PCM_16"), ("ogg", "VORBIS")])
def test_load_flac_and_ogg(tmp_path, ext, subtype):
    path = tmp_path / f"tone.{ext}"
    save_audio(path, tone(16000, 1.0), 16000, subtype=subtype)
    x = load_audio(path)
    assert abs(len(x) - 16000) <= 2
    assert abs(peak_hz(x, 16000) - 440.0) <= 1.0
    if ext == "flac":  # lossless apart from 16-bit quantisation
        assert np.abs(x - tone(16000, 1.0)).max() <= 1 / 32768


def test_file_errors_are_typed(tmp_path):
    with pytest.raises(AudioFileError, match="no such file") as err:
        load_audio(tmp_path / "missing.wav")
    assert "missing.wav" in str(err.value)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(2000))
    for call in (load_audio, audio_duration, lambda p: iter_audio_blocks(p, 1.0)):
        with pytest.raises(AudioFileError, match="not a readable audio file"):
            call(corrupt)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    for call in (load_audio, lambda p: iter_audio_blocks(p, 1.0)):
        with pytest.raises(EmptyAudioError, match="no samples"):
            call(empty)
    nan_file = tmp_path / "nan.wav"
    x = noise(4000)
    x[3000] = np.nan
    sf.write(nan_file, x, 16000, subtype="FLOAT")
    with pytest.raises(InvalidAudioError, match="NaN"):
        load_audio(nan_file)
    with pytest.raises(InvalidAudioError, match="NaN"):
        list(iter_audio_blocks(nan_file, 0.1))
    with pytest.raises(AudioFileError, match="cannot write"):
        save_audio(tmp_path / "no" / "such" / "dir.wav", x[:10], 16000)


def test_prepare_audio_shapes_dtypes_and_errors():
    left, right = noise(3000, 1), noise(3000, 2)
    mean = (left + right) / 2
    np.testing.assert_allclose(prepare_audio(np.stack([left, right]), 16000), mean, atol=1e-7)
    np.testing.assert_allclose(prepare_audio(np.stack([left, right], 1), 16000), mean, atol=1e-7)
    pcm = (left * 32768).astype(np.int16)
    np.testing.assert_allclose(prepare_audio(torch.from_numpy(pcm), 16000), left, atol=1 / 32768)
    assert abs(len(prepare_audio(left, 48000)) - 1000) <= 1
    x = prepare_audio(tone(48000, 0.5), 48000)
    assert abs(peak_hz(x, 16000) - 440.0) <= 2.0
    bad = left.copy()
    bad[5] = np.nan
    with pytest.raises(InvalidAudioError, match="NaN or Inf"):
        prepare_audio(bad, 16000)
    with pytest.raises(EmptyAudioError, match="no samples"):
        prepare_audio(np.zeros(0, np.float32), 16000)
    with pytest.raises(InvalidAudioError, match="channels"):
        prepare_audio(np.zeros((9, 9), np.float32), 16000)
    with pytest.raises(InputError):
        prepare_audio(left, 0)


def test_iter_audio_blocks_matches_load_audio(tmp_path):
    path = tmp_path / "long44k.wav"
    stereo = np.stack([tone(44100, 3.3), noise(int(44100 * 3.3), 4)], 1)
    sf.write(path, stereo, 44100)
    whole = load_audio(path)
    blocks = list(iter_audio_blocks(path, block_seconds=0.37))
    assert all(b.dtype == np.float32 and b.ndim == 1 and len(b) > 0 for b in blocks)
    assert len(blocks) >= 8
    joined = np.concatenate(blocks)
    # Measured: same length and max abs diff 0.0 (soxr's one-shot call streams internally).
    assert abs(len(joined) - len(whole)) <= 2
    n = min(len(joined), len(whole))
    assert np.abs(joined[:n] - whole[:n]).max() <= 1e-5
    same_rate = np.concatenate(list(iter_audio_blocks(path, 0.5, sample_rate=44100)))
    np.testing.assert_array_equal(same_rate, load_audio(path, sample_rate=44100))


def test_save_audio_round_trip(tmp_path):
    x = noise(5000, 5)
    save_audio(tmp_path / "a.wav", x, 16000)
    assert sf.info(tmp_path / "a.wav").subtype == "PCM_16"
    assert np.abs(load_audio(tmp_path / "a.wav") - x).max() <= 1 / 32768
    save_audio(tmp_path / "f.wav", torch.from_numpy(x), 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "f.wav"), x)
    save_audio(tmp_path / "clip.wav", np.full(100, 3.0, np.float32), 16000)
    assert load_audio(tmp_path / "clip.wav").min() > 0.99  # clipped, not wrapped to negative
