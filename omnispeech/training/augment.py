"""On-the-fly audio augmentation for recognition training, reproducible from a random generator.

A synthesised corpus is clean, level and spoken by engines; people record in rooms, over
phones, near noise, through lossy codecs, faster or slower and higher or lower. Each effect
below is applied with its own probability, in the order a recording would meet them: the
talker (speed, pitch), the room (reverberation), the environment (noise), the channel
(telephone band, codec), the recorder (gain, clipping). Everything is numpy on 16 kHz mono
float32 and depends only on the generator passed in, so batches stay a function of
(seed, step, rank).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import soxr

from omnispeech.audio.io import change_speed
from omnispeech.config import FrozenConfig

SAMPLE_RATE = 16_000


@dataclasses.dataclass(frozen=True)
class AugmentConfig(FrozenConfig):
    """Probabilities and ranges of each effect (``enabled=False`` turns all of them off)."""

    enabled: bool = True
    p_speed: float = 0.5
    speed: tuple[float, float] = (0.85, 1.15)  # resampling factor: tempo and pitch together
    p_pitch: float = 0.3
    semitones: tuple[float, float] = (-3.0, 3.0)  # pitch only (tempo kept)
    p_reverb: float = 0.3
    rt60: tuple[float, float] = (0.15, 0.9)  # seconds
    p_noise: float = 0.4
    snr_db: tuple[float, float] = (0.0, 30.0)
    p_telephone: float = 0.15
    p_codec: float = 0.15
    p_gain: float = 0.5
    gain_db: tuple[float, float] = (-18.0, 8.0)  # louder than full scale clips, as recorders do
    # SpecAugment on the log-mel (applied by the batcher): masks per utterance and sizes.
    time_masks: int = 2
    time_mask_frames: int = 30
    freq_masks: int = 2
    freq_mask_bins: int = 16
    # Training steps over which every probability and mask count grows from 0 to its value:
    # a model from scratch first learns to read clean speech, then hard speech (0: no ramp).
    ramp_steps: int = 0

    def __post_init__(self) -> None:
        for name in _PROBABILITIES:
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1]")
        if self.ramp_steps < 0:
            raise ValueError("ramp_steps must be >= 0")

    def at_step(self, step: int) -> AugmentConfig:
        """The settings in force at training ``step``: during the ramp, each effect's
        probability and the number of SpecAugment masks are scaled by ``step / ramp_steps``."""
        if step >= self.ramp_steps:
            return self
        scale = step / self.ramp_steps
        scaled = {name: getattr(self, name) * scale for name in _PROBABILITIES}
        masks = {name: round(getattr(self, name) * scale) for name in ("time_masks", "freq_masks")}
        return dataclasses.replace(self, **scaled, **masks)


_PROBABILITIES = ("p_speed", "p_pitch", "p_reverb", "p_noise", "p_telephone", "p_codec", "p_gain")


def shift_pitch(wav: np.ndarray, semitones: float, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Shift the pitch by ``semitones`` and keep the duration: a phase vocoder stretches time
    by the pitch ratio, then resampling restores the length while moving every frequency."""
    ratio = 2.0 ** (semitones / 12.0)
    if wav.shape[0] < n_fft:
        return wav
    window = np.hanning(n_fft).astype(np.float32)
    frames = 1 + (wav.shape[0] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.fft.rfft(wav[idx] * window, axis=1)  # [F, n_fft / 2 + 1]
    steps = np.arange(0, frames - 1, 1.0 / ratio)  # stretch by `ratio`
    k = steps.astype(np.int64)
    frac = (steps - k)[:, None]
    mag = (1 - frac) * np.abs(spec[k]) + frac * np.abs(spec[k + 1])
    # Phase advances by the measured per-bin frequency of the frames each step sits between.
    expected = 2 * np.pi * hop * np.arange(spec.shape[1]) / n_fft
    delta = np.angle(spec[k + 1]) - np.angle(spec[k]) - expected
    delta -= 2 * np.pi * np.round(delta / (2 * np.pi))
    advance = np.cumsum(expected + delta, axis=0)
    phase = np.angle(spec[0]) + np.concatenate([np.zeros_like(advance[:1]), advance[:-1]])
    frames_out = np.fft.irfft(mag * np.exp(1j * phase), n=n_fft, axis=1) * window
    stretched = _overlap_add(frames_out, hop)
    norm = _overlap_add(np.broadcast_to(window**2, frames_out.shape), hop)
    stretched /= np.maximum(norm, 1e-3)
    return change_speed(stretched.astype(np.float32), ratio)[: wav.shape[0]]


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Sum frames ``[F, N]`` placed every ``hop`` samples (N a multiple of ``hop``)."""
    count, n = frames.shape
    parts = n // hop
    out = np.zeros((count + parts - 1) * hop, dtype=np.float64)
    pieces = frames.reshape(count, parts, hop)
    for j in range(parts):  # a few vectorised adds instead of one per frame
        out[j * hop : (j + count) * hop] += pieces[:, j].reshape(-1)
    return out


def room_impulse(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A synthetic room impulse response: a direct path, then exponentially decaying noise
    (energy down 60 dB after ``rt60`` seconds) starting after a few milliseconds."""
    n = max(int(rt60 * SAMPLE_RATE), 16)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    tail[: int(rng.uniform(0.002, 0.01) * SAMPLE_RATE)] = 0.0  # pre-delay of early reflections
    ir = tail * 10 ** (rng.uniform(-12.0, 3.0) / 20) / max(np.sqrt(np.sum(tail**2)), 1e-9)
    ir[0] = 1.0  # the direct path
    return ir.astype(np.float32)


def reverberate(wav: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """``wav`` ``[S]`` played in the room of impulse response ``ir``: same length, FFT
    convolution (a direct convolution of seconds of audio with a 0.5 s response is slow)."""
    n = wav.shape[0] + ir.shape[0] - 1
    size = 1 << (n - 1).bit_length()
    out = np.fft.irfft(np.fft.rfft(wav, size) * np.fft.rfft(ir, size), size)[: wav.shape[0]]
    return out.astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """White, pink or brown noise (power falling as ``1 / f**alpha``, alpha in 0..2), or a hum
    with harmonics: the kinds of background a microphone picks up."""
    if rng.random() < 0.15:
        f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)
        t = np.arange(n) / SAMPLE_RATE
        hum = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 6))
        return (hum + 0.1 * rng.standard_normal(n)).astype(np.float32)
    return broadband_noise(rng, n)


def broadband_noise(rng: np.random.Generator, n: int, rate: int = SAMPLE_RATE) -> np.ndarray:
    """``n`` samples at ``rate`` Hz of white to brown noise: power falling as ``1 / f**alpha``,
    alpha drawn in 0..2 (flat below 20 Hz)."""
    alpha = rng.uniform(0.0, 2.0)
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / rate), 20.0)
    return np.fft.irfft(spec / freqs ** (alpha / 2), n).astype(np.float32)


def add_noise(wav: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix ``noise`` in at ``snr_db`` relative to the speech's power."""
    p_speech = float(np.mean(wav**2)) + 1e-12
    p_noise = float(np.mean(noise**2)) + 1e-12
    return (wav + noise * np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))).astype(np.float32)


def band_limit(wav: np.ndarray, low: float, high: float) -> np.ndarray:
    """Keep ``low``..``high`` Hz (soft 100 Hz edges), as a channel or a codec does."""
    size = wav.shape[0]
    spec = np.fft.rfft(wav)
    f = np.fft.rfftfreq(size, 1 / SAMPLE_RATE)
    gain = np.clip((f - low + 100) / 200, 0, 1) * np.clip((high + 100 - f) / 200, 0, 1)
    return np.fft.irfft(spec * gain, size).astype(np.float32)


def telephone(wav: np.ndarray) -> np.ndarray:
    """A narrow-band call: 300-3400 Hz, 8 kHz sampling and back, G.711 mu-law on the way."""
    narrow = soxr.resample(band_limit(wav, 300.0, 3400.0), SAMPLE_RATE, 8000)
    narrow = mu_law(narrow.astype(np.float32))
    return soxr.resample(narrow, 8000, SAMPLE_RATE)[: wav.shape[0]].astype(np.float32)


def mu_law(wav: np.ndarray, bits: int = 8) -> np.ndarray:
    """Companding quantisation (G.711 style) at ``bits`` bits."""
    mu = 2**bits - 1
    x = np.clip(wav, -1, 1)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    y = np.round((y + 1) / 2 * mu) / mu * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def lossy_codec(rng: np.random.Generator, wav: np.ndarray, n_fft: int = 512) -> np.ndarray:
    """Artefacts of low-bit-rate perceptual codecs: a low-pass at 3.5-7 kHz, and spectral
    coefficients quantised coarsely, so weak ones vanish (the 'birdies' of a starved MP3)."""
    cutoff = rng.uniform(3500.0, 7000.0)
    x = band_limit(wav, 0.0, cutoff)
    hop = n_fft // 2
    pad = (-x.shape[0]) % hop + n_fft
    xp = np.pad(x, (0, pad))
    window = np.sqrt(np.hanning(n_fft + 1)[:-1]).astype(np.float32)  # COLA at 50 % overlap
    idx = np.arange(n_fft)[None, :] + hop * np.arange(1 + (xp.shape[0] - n_fft) // hop)[:, None]
    spec = np.fft.rfft(xp[idx] * window, axis=1)
    step = np.maximum(np.abs(spec).max(axis=1, keepdims=True), 1e-6) * rng.uniform(0.02, 0.08)
    spec = np.round(spec.real / step) * step + 1j * np.round(spec.imag / step) * step
    frames = np.fft.irfft(spec, n=n_fft, axis=1) * window
    return _overlap_add(frames, hop)[: x.shape[0]].astype(np.float32)


def augment(wav: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """One random degradation of a clean 16 kHz utterance ``[S]`` -> ``[S']`` (the length
    changes only with speed); samples stay within [-1, 1]."""
    if not cfg.enabled or wav.shape[0] == 0:
        return wav
    if rng.random() < cfg.p_speed:
        wav = change_speed(wav, rng.uniform(*cfg.speed))
    if rng.random() < cfg.p_pitch:
        wav = shift_pitch(wav, rng.uniform(*cfg.semitones))
    if rng.random() < cfg.p_reverb:
        wav = reverberate(wav, room_impulse(rng, rng.uniform(*cfg.rt60)))
    if rng.random() < cfg.p_noise:
        wav = add_noise(wav, coloured_noise(rng, wav.shape[0]), rng.uniform(*cfg.snr_db))
    if rng.random() < cfg.p_telephone:
        wav = telephone(wav)
    elif rng.random() < cfg.p_codec:
        wav = lossy_codec(rng, wav) if rng.random() < 0.7 else mu_law(wav, int(rng.integers(6, 9)))
    peak = float(np.abs(wav).max()) + 1e-9
    wav = wav / peak * 10 ** (-1 / 20)  # back to -1 dBFS before the recorder's gain
    if rng.random() < cfg.p_gain:
        wav = wav * 10 ** (rng.uniform(*cfg.gain_db) / 20)
    return np.clip(wav, -1.0, 1.0).astype(np.float32)


def spec_augment(
    features: np.ndarray, num_frames: int, rng: np.random.Generator, cfg: AugmentConfig
) -> np.ndarray:
    """Time and frequency masks on one log-mel ``[n_mels, T]`` (valid frames ``num_frames``),
    filled with the utterance's mean so the masks carry no level cue."""
    if not cfg.enabled:
        return features
    out = features.copy()
    fill = float(out[:, :num_frames].mean())
    for _ in range(cfg.time_masks):
        width = int(rng.integers(0, cfg.time_mask_frames + 1))
        start = int(rng.integers(0, max(num_frames - width, 0) + 1))
        out[:, start : start + width] = fill
    for _ in range(cfg.freq_masks):
        width = int(rng.integers(0, cfg.freq_mask_bins + 1))
        start = int(rng.integers(0, max(out.shape[0] - width, 0) + 1))
        out[start : start + width, :num_frames] = fill
    return out
