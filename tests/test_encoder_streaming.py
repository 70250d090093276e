"""Incremental streaming of the AuT encoder equals the offline pass; the future never changes
the past; work per push is bounded by one attention window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from omnispeech.audio import log_mel_spectrogram
from omnispeech.encoder import AudioEncoder, EncoderConfig
from omnispeech.errors import EmptyAudioError, InputError

CFG = EncoderConfig(
    d_model=32,
    encoder_layers=2,
    encoder_attention_heads=4,
    encoder_ffn_dim=64,
    output_dim=48,
    downsample_hidden_size=16,
)


@pytest.fixture(scope="module")
def encoder() -> AudioEncoder:
    torch.manual_seed(0)
    enc = AudioEncoder(CFG).eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_(0, 0.1)
    return enc


def _stream_features(enc, feats: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    out, pos = [], 0
    with enc.streaming(feats.shape[0]):
        for size in sizes:
            out.append(enc.push_features(feats[..., pos : pos + size]))
            pos += size
        out.append(enc.push_features(feats[..., pos:]))
        out.append(enc.flush())
    return torch.cat(out, dim=1)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    total=st.integers(1, 2100),
    sizes=st.lists(st.integers(0, 350), min_size=1, max_size=30),
    seed=st.integers(0, 2**16),
)
def test_streaming_features_equal_offline(encoder, total, sizes, seed):
    feats = torch.randn(2, 128, total, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        offline = encoder(feats).tokens
    streamed = _stream_features(encoder, feats, sizes)
    assert streamed.shape == offline.shape == (2, CFG.num_tokens(total), 48)
    assert torch.allclose(streamed, offline, atol=1e-5, rtol=0)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seconds=st.floats(0.05, 12.0),
    piece_ms=st.sampled_from([10, 37, 100, 250, 1000]),
    seed=st.integers(0, 2**16),
)
# Exactly one window: its last feature frames only arrive at flush, completing the window there.
@example(seconds=8.0, piece_ms=10, seed=0)
def test_streaming_audio_equals_offline(encoder, seconds, piece_ms, seed):
    wav = np.random.default_rng(seed).standard_normal(int(seconds * 16000)).astype(np.float32)
    wav *= 0.1
    feats = log_mel_spectrogram(wav)
    # Streaming features are exact where the log-mel floor (max - 8 in log10 power, max - 2
    # after the rescale) is inactive (see StreamingLogMel). Noise almost always keeps it so,
    # but now and then one bin of one frame falls below it (seed 1734 at 4 s, frame 7): the
    # documented difference, not the property under test.
    assume(bool((feats > feats.max() - 2.0).all()))
    with torch.no_grad():
        offline = encoder(feats[None]).tokens
    step = 16 * piece_ms
    out = []
    with encoder.streaming(1):
        for i in range(0, wav.shape[0], step):
            out.append(encoder.push_audio(wav[i : i + step]))
        out.append(encoder.flush())
    streamed = torch.cat(out, dim=1)
    assert streamed.shape == offline.shape
    assert torch.allclose(streamed, offline, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pushes", [[1700, 900], [2600]], ids=["past-then-future", "at-once"])
def test_future_input_never_changes_past_tokens(encoder, pushes):
    """Two copies of a stream (one batch) share 1700 frames of past and then hear different
    futures. Tokens of the two complete 8-s windows of the past must agree between the copies
    and with the offline pass over past + future, whether the future arrived after the past
    or in the same push; what was released before the future arrived is final."""
    g = torch.Generator().manual_seed(1)
    past = torch.randn(1, 128, 1700, generator=g).expand(2, -1, -1)
    feats = torch.cat([past, torch.randn(2, 128, 900, generator=g)], dim=-1)
    with torch.no_grad():
        offline = encoder(feats).tokens
    out, pos = [], 0
    with encoder.streaming(2):
        for size in pushes:
            out.append(encoder.push_features(feats[..., pos : pos + size]))
            pos += size
        out.append(encoder.flush())
    before, streamed = out[0], torch.cat(out, dim=1)
    settled = 104 * 2  # tokens of the windows that hold past frames only
    if len(pushes) > 1:
        assert before.shape[1] == settled
        assert torch.allclose(before, offline[:, :settled], atol=1e-5, rtol=0)
    assert torch.allclose(streamed[0, :settled], streamed[1, :settled], atol=1e-6, rtol=0)
    assert torch.allclose(streamed, offline, atol=1e-5, rtol=0)
    # The futures did reach the encoder: the third window differs between the copies.
    assert (streamed[0, settled:] - streamed[1, settled:]).abs().max() > 1e-2


def test_tokens_are_released_per_window(encoder):
    # A window is 8 chunks of 100 frames: nothing before 800 frames, 104 tokens at 800.
    with encoder.streaming(1):
        assert encoder.push_features(torch.randn(1, 128, 799)).shape[1] == 0
        assert encoder.push_features(torch.randn(1, 128, 1)).shape[1] == 104
        assert encoder.flush().shape[1] == 0


def test_streaming_state_snapshot_and_restore(encoder):
    feats = torch.randn(1, 128, 950)
    with encoder.streaming(1):
        encoder.push_features(feats[..., :450])
        snap = encoder.get_streaming_state()
        a = torch.cat([encoder.push_features(feats[..., 450:]), encoder.flush()], dim=1)
        encoder.set_streaming_state(snap)
        b = torch.cat([encoder.push_features(feats[..., 450:]), encoder.flush()], dim=1)
    assert torch.equal(a, b)


def test_streaming_errors(encoder):
    with pytest.raises(RuntimeError, match="streaming"):
        encoder.push_features(torch.randn(1, 128, 10))
    with encoder.streaming(2):
        with pytest.raises(InputError, match=r"\[2, 128, t\]"):
            encoder.push_features(torch.randn(1, 128, 10))
        with pytest.raises(EmptyAudioError):
            encoder.flush()


def test_offline_input_validation(encoder):
    with pytest.raises(InputError, match="NaN"):
        encoder(torch.full((1, 128, 50), float("nan")))
    with pytest.raises(InputError, match=r"\[B, 128, T\]"):
        encoder(torch.randn(1, 80, 50))
    with pytest.raises(InputError, match="lengths"):
        encoder(torch.randn(2, 128, 50), torch.tensor([50, 0]))


def test_batch_equals_audios_one_by_one_whatever_the_padding(encoder):
    g = torch.Generator().manual_seed(9)
    a, b = torch.randn(128, 930, generator=g), torch.randn(128, 333, generator=g)
    batch = torch.full((2, 128, 1500), 7.0)  # junk past the lengths must be ignored
    batch[0, :, :930], batch[1, :, :333] = a, b
    with torch.no_grad():
        out = encoder(batch, torch.tensor([930, 333]))
        alone = [encoder(x[None]).tokens[0] for x in (a, b)]
    assert out.lengths.tolist() == [x.shape[0] for x in alone] == [121, 44]
    for i, ref in enumerate(alone):
        assert torch.allclose(out.tokens[i, : ref.shape[0]], ref, atol=1e-5)
