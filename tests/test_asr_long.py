"""Long recordings: cut at quiet points, read block by block, transcribed segment by segment."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from omnispeech.audio import iter_quiet_segments
from omnispeech.errors import InputError
from omnispeech.pipelines import ASR

SR = 16000


def _speechy(seconds: float, gaps: list[float], rng) -> np.ndarray:
    """Noise bursts with 300 ms near-silent gaps centred at ``gaps`` (seconds)."""
    wav = 0.2 * rng.standard_normal(int(seconds * SR)).astype(np.float32)
    for g in gaps:
        a, b = int((g - 0.15) * SR), int((g + 0.15) * SR)
        wav[a:b] *= 1e-3
    return wav


def test_segments_cut_in_quiet_gaps_and_keep_every_sample(tmp_path):
    rng = np.random.default_rng(0)
    wav = _speechy(70.0, gaps=[26.0, 50.0], rng=rng)
    sf.write(tmp_path / "long.wav", wav, SR)
    segments = list(iter_quiet_segments(tmp_path / "long.wav", segment_seconds=30.0))
    assert sum(s.shape[0] for s in segments) == wav.shape[0]
    cuts = np.cumsum([s.shape[0] for s in segments])[:-1] / SR
    assert len(cuts) == 2
    assert abs(cuts[0] - 26.0) < 0.15 and abs(cuts[1] - 50.0) < 0.15
    assert all(s.shape[0] <= 30 * SR for s in segments)


@pytest.fixture(scope="module")
def asr(tiny_asr_dir) -> ASR:
    return ASR.from_pretrained(tiny_asr_dir)


def test_transcribe_file_joins_segment_transcripts(asr, tmp_path):
    rng = np.random.default_rng(1)
    wav = _speechy(8.0, gaps=[4.0], rng=rng)
    sf.write(tmp_path / "a.wav", wav, SR)
    done = []
    result = asr.transcribe_file(
        tmp_path / "a.wav", language="en", segment_seconds=5.0, progress=done.append
    )
    assert len(done) == 2 and abs(sum(done) - 8.0) < 1e-6
    segments = iter_quiet_segments(tmp_path / "a.wav", 5.0)
    parts = [asr.transcribe(s, language="en").text for s in segments]
    assert result.text == " ".join(p for p in parts if p)
    assert result.language == "English"


def test_segment_length_is_validated(asr, tmp_path):
    with pytest.raises(InputError, match="segment_seconds"):
        asr.transcribe_file(tmp_path / "x.wav", segment_seconds=1.0)


def test_api_raises_typed_errors(asr, tmp_path):
    from omnispeech.errors import AudioFileError, EmptyAudioError, InvalidAudioError

    with pytest.raises(AudioFileError, match="no such file"):
        asr.transcribe(tmp_path / "missing.wav")
    with pytest.raises(EmptyAudioError):
        asr.transcribe(np.zeros(0, dtype=np.float32))
    with pytest.raises(EmptyAudioError, match="silent"):
        asr.transcribe(np.zeros(SR, dtype=np.float32))
    with pytest.raises(InvalidAudioError, match="NaN"):
        asr.transcribe(np.full(SR, np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="unsupported language"):
        asr.transcribe(np.ones(SR, dtype=np.float32), language="klingon")


def test_other_rates_and_channels_are_converted(asr):
    rng = np.random.default_rng(5)
    wav16 = (0.1 * rng.standard_normal(2 * SR)).astype(np.float32)
    stereo = np.stack([wav16, wav16])  # [C, S]: identical channels downmix to the same signal
    a = asr.transcribe(wav16, language="en", max_new_tokens=8)
    b = asr.transcribe(stereo, language="en", max_new_tokens=8)
    assert a.token_ids == b.token_ids
    # 8 kHz input is resampled: the model sees 2 s of audio either way.
    c = asr.transcribe(wav16[::2], sample_rate=8000, language="en", max_new_tokens=8)
    assert len(c.token_ids) == len(a.token_ids) == 8


def test_bfloat16_pipeline_runs_close_to_float32(asr, tmp_path):
    import torch

    from omnispeech.audio import log_mel_spectrogram

    asr.save_pretrained(tmp_path / "m")
    half = ASR.from_pretrained(tmp_path / "m", dtype=torch.bfloat16)
    assert half.decoder.embed_tokens.weight.dtype == torch.bfloat16
    wav = (0.1 * np.random.default_rng(6).standard_normal(SR)).astype(np.float32)
    feats = log_mel_spectrogram(wav)[None]
    with torch.no_grad():
        full, low = asr.encoder(feats).tokens, half.encoder(feats).tokens.float()
    assert (low - full).norm() / full.norm() < 0.05
    assert len(half.transcribe(wav, language="en", max_new_tokens=6).token_ids) <= 6
