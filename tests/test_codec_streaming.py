"""Streaming codec encoding equals the offline pass exactly; the future never changes the past;
the strided causal conv and the transformer's KV cache stream on their own."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from omnispeech.codec import CodecEncoder
from omnispeech.codec.layers import StridedCausalConv
from omnispeech.codec.transformer import EncoderTransformer
from omnispeech.errors import InputError
from tests.vocoder_ref import GOLDEN

HOP = 1920  # samples per code frame
# Sizes that stress the strides: empty, single samples, partial SEANet strides (2..8 samples),
# a SEANet frame (960), a code frame (1920) and sizes just around them.
EDGE_SIZES = [0, 1, 2, 3, 5, 7, 8, 959, 960, 961, 1919, 1920, 1921, 3840]


@pytest.fixture(scope="module")
def encoder() -> CodecEncoder:
    return CodecEncoder.from_pretrained(GOLDEN)


def _audio(batch: int, samples: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(batch, 1, samples, generator=g)


def _pieces(wav: torch.Tensor, sizes: list[int], most: int = 300) -> list[torch.Tensor]:
    """``wav`` cut into ``sizes`` (cycled) until it is used up; after ``most`` pieces (tiny or
    empty sizes) the rest is one piece, which keeps the test fast."""
    out, pos = [], 0
    while pos < wav.shape[-1]:
        size = sizes[len(out) % len(sizes)] if len(out) < most else wav.shape[-1]
        out.append(wav[..., pos : pos + size])
        pos += size
    return out


def _stream_codes(enc: CodecEncoder, wav: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    with enc.streaming(wav.shape[0]):
        out = [enc.push(piece) for piece in _pieces(wav, sizes)]
        out.append(enc.flush())
    return torch.cat(out, dim=-1)


def _stream_latent(enc: CodecEncoder, wav: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    with enc.streaming(wav.shape[0]), torch.no_grad():
        out = [enc.net.latent(piece) for piece in _pieces(wav, sizes)]
        out.append(enc.net.flush_latent())
    return torch.cat(out, dim=-1)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    total=st.one_of(st.integers(1, 14_000), st.integers(1, 6).map(lambda k: HOP * k)),
    sizes=st.lists(
        st.one_of(st.sampled_from(EDGE_SIZES), st.integers(0, 5000)), min_size=1, max_size=12
    ),
    seed=st.integers(0, 2**16),
)
@example(total=HOP * 3, sizes=[HOP], seed=0)  # pushes that end exactly on frame boundaries
@example(total=HOP * 2 + 1, sizes=[1, 0], seed=1)  # single samples, then the rest
@example(total=5, sizes=[0, 2], seed=2)  # less than one stride of the first strided conv
def test_streamed_codes_equal_offline(encoder, total, sizes, seed):
    wav = _audio(1, total, seed)
    offline, frames = encoder.encode(wav)
    streamed = _stream_codes(encoder, wav, sizes)
    assert frames.tolist() == [-(-total // HOP)]
    assert streamed.dtype == torch.int64
    assert torch.equal(streamed, offline)
    with torch.no_grad():
        latent = encoder.net.latent(wav)
    assert torch.allclose(_stream_latent(encoder, wav, sizes), latent, atol=1e-5, rtol=0)


def test_sample_by_sample_equals_offline(encoder):
    wav = _audio(1, HOP + 5, 11)
    with encoder.streaming(1):
        out = [encoder.push(wav[..., i : i + 1]) for i in range(wav.shape[-1])]
        out.append(encoder.flush())
    assert [i for i, codes in enumerate(out) if codes.shape[-1]] == [HOP - 1, HOP + 5]
    assert torch.equal(torch.cat(out, dim=-1), encoder.encode(wav)[0])


def test_codes_are_released_as_soon_as_their_frame_is_complete(encoder):
    """A frame is final when its last sample arrives: no look-ahead, no extra delay."""
    wav = _audio(1, 3 * HOP + 500, 3)
    with encoder.streaming(1):
        assert encoder.push(wav[..., : HOP - 1]).shape[-1] == 0
        assert encoder.push(wav[..., HOP - 1 : HOP]).shape[-1] == 1
        assert encoder.push(wav[..., HOP : 3 * HOP]).shape[-1] == 2
        assert encoder.push(wav[..., 3 * HOP :]).shape[-1] == 0
        assert encoder.flush().shape[-1] == 1  # the partial last frame


@pytest.mark.parametrize("split", [True, False], ids=["past-then-future", "at-once"])
def test_future_input_never_changes_past_codes(encoder, split):
    """Two copies of a stream (one batch) share 4 frames and 777 samples of past, then hear
    different futures. The latents and codes of the 4 frames made of past samples only agree
    between the copies and with the offline pass over past + future, whether the future came
    after the past or in the same push; what was released before the future came is final."""
    past = _audio(1, 4 * HOP + 777, 4).expand(2, -1, -1)
    wav = torch.cat([past, _audio(2, 3000, 5)], dim=-1)
    pushes = [past.shape[-1], 3000] if split else [wav.shape[-1]]
    offline, _ = encoder.encode(wav)
    with torch.no_grad():
        offline_latent = encoder.net.latent(wav)
    for stage in ("latent", "codes"):
        out, pos = [], 0
        with encoder.streaming(2), torch.no_grad():
            for size in pushes:
                piece = wav[..., pos : pos + size]
                out.append(encoder.net.latent(piece) if stage == "latent" else encoder.push(piece))
                pos += size
            out.append(encoder.net.flush_latent() if stage == "latent" else encoder.flush())
        streamed, want = torch.cat(out, dim=-1), offline_latent if stage == "latent" else offline
        assert streamed.shape == want.shape
        if split:
            assert out[0].shape[-1] == 4
            assert torch.allclose(out[0].float(), want[..., :4].float(), atol=1e-5, rtol=0)
        assert torch.allclose(streamed[0, :, :4].float(), streamed[1, :, :4].float(), atol=1e-6)
        assert torch.allclose(streamed.float(), want.float(), atol=1e-5, rtol=0)
        # The futures did reach the encoder: the later frames differ between the copies.
        assert not torch.equal(streamed[0, :, 4:], streamed[1, :, 4:])


def test_batch_of_two_streams_equals_each_alone(encoder):
    wav = torch.cat([_audio(1, 9000, 6), 0.05 * _audio(1, 9000, 7)])
    streamed = _stream_codes(encoder, wav, [1000, 1, 2500, 0, 1920])
    for i in range(2):
        assert torch.equal(streamed[i], encoder.encode(wav[i])[0][0])
    assert not torch.equal(streamed[0], streamed[1])


def test_snapshot_and_restore_continue_identically(encoder):
    wav = _audio(1, 5 * HOP + 333, 8)
    with encoder.streaming(1):
        head = encoder.push(wav[..., :4321])
        snap = encoder.get_streaming_state()
        a = torch.cat([encoder.push(wav[..., 4321:]), encoder.flush()], dim=-1)
        encoder.set_streaming_state(snap)
        encoder.push(_audio(1, 2000, 9))  # a speculative continuation, rolled back
        encoder.set_streaming_state(snap)
        b = torch.cat([encoder.push(wav[..., 4321:]), encoder.flush()], dim=-1)
    assert torch.equal(a, b)
    assert torch.equal(torch.cat([head, a], dim=-1), encoder.encode(wav)[0])


def test_state_stays_bounded_and_flush_restarts(encoder):
    """Each conv keeps less than its window; the context can encode a second stream."""
    wav = _audio(1, 7 * HOP + 11, 10)
    with encoder.streaming(1):
        for piece in _pieces(wav, [777]):
            encoder.push(piece)
            for conv in encoder.modules():
                if isinstance(conv, StridedCausalConv):
                    assert conv.streaming_state.buffer.shape[-1] < conv.effective
        encoder.flush()
        again = torch.cat([encoder.push(wav), encoder.flush()], dim=-1)
        assert encoder.flush().shape == (1, 16, 0)  # a stream with no samples has no codes
    assert torch.equal(again, encoder.encode(wav)[0])


def test_streaming_errors(encoder):
    with pytest.raises(RuntimeError, match="streaming"):
        encoder.push(torch.zeros(1, 1, 100))
    with encoder.streaming(2):
        with pytest.raises(InputError, match=r"\[2, 1, n\]"):
            encoder.push(torch.zeros(1, 1, 100))
        with pytest.raises(InputError, match="NaN or Inf"):
            encoder.push(torch.full((2, 1, 100), float("inf")))
        with pytest.raises(RuntimeError, match="push"):
            encoder.encode(torch.zeros(1, 1, 100))


# -- the layers alone -----------------------------------------------------------------------


def _reference_conv(conv: StridedCausalConv, x: torch.Tensor) -> torch.Tensor:
    """The offline definition, written independently: pad left by ``k_eff - S`` and right up
    to a whole last stride, then one plain conv."""
    right = -x.shape[-1] % conv.stride
    mode = "replicate" if conv.replicate else "constant"
    return conv.conv(F.pad(x, (conv.left, right), mode=mode))


@settings(max_examples=25, deadline=None)
@given(
    kernel=st.integers(1, 9),
    stride=st.integers(1, 6),
    dilation=st.integers(1, 3),
    replicate=st.booleans(),
    length=st.integers(1, 90),
    sizes=st.lists(st.integers(0, 13), min_size=1, max_size=8),
    seed=st.integers(0, 2**16),
)
def test_strided_conv_chunked_equals_full(  # noqa: PLR0913 - one argument per drawn value
    kernel, stride, dilation, replicate, length, sizes, seed
):
    if (kernel - 1) * dilation + 1 < stride:
        kernel = stride  # a kernel shorter than its stride would skip inputs
    torch.manual_seed(seed)
    conv = StridedCausalConv(3, 4, kernel, stride, dilation, replicate=replicate)
    x = torch.randn(2, 3, length)
    with torch.no_grad():
        full = conv(x)
        assert full.shape[-1] == -(-length // stride)
        assert torch.allclose(full, _reference_conv(conv, x), atol=1e-6, rtol=1e-6)
        with conv.streaming(2):
            out = [conv(piece) for piece in _pieces(x, sizes)]
            out.append(conv.flush())
    chunked = torch.cat(out, dim=-1)
    assert chunked.shape == full.shape
    assert torch.allclose(chunked, full, atol=1e-6, rtol=1e-6)


def test_strided_conv_is_causal():
    torch.manual_seed(0)
    conv = StridedCausalConv(2, 3, 4, 2, replicate=True)
    x = torch.randn(1, 2, 10)
    with torch.no_grad(), conv.streaming(1):
        first = conv(x)
        conv.reset_streaming()
        again = conv(torch.cat([x, torch.randn(1, 2, 7)], dim=-1))
    assert first.shape[-1] == 5
    assert torch.equal(again[..., :5], first)


def _transformer(window: int | None) -> EncoderTransformer:
    from omnispeech.codec import CodecEncoderConfig

    cfg = dataclasses.replace(
        CodecEncoderConfig(),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=4,
        intermediate_size=32,
        attention_window=window,
    )
    torch.manual_seed(1)
    model = EncoderTransformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("window", [None, 1, 3, 8])
def test_transformer_kv_cache_streaming_equals_full(window):
    model = _transformer(window)
    x = torch.randn(2, 23, 16)
    sizes = [1, 0, 4, 1, 7, 2, 8]
    with torch.no_grad():
        full = model(x)
        with model.streaming(2):
            out, pos = [], 0
            for size in sizes:
                out.append(model(x[:, pos : pos + size]))
                pos += size
                cache = model.layers[0].self_attn.streaming_state
                # Without a window the cache holds every frame; with one, the last window - 1.
                held = pos if window is None else min(pos, window - 1)
                assert cache.length == held
    assert torch.allclose(torch.cat(out, dim=1), full, atol=1e-5, rtol=0)


def test_kv_cache_capacity_doubles():
    model = _transformer(None)
    capacities = []
    with torch.no_grad(), model.streaming(1):
        for _ in range(9):
            model(torch.randn(1, 1, 16))
            capacities.append(model.layers[1].self_attn.streaming_state.keys.shape[2])
        model(torch.randn(1, 20, 16))
        capacities.append(model.layers[1].self_attn.streaming_state.keys.shape[2])
    assert capacities == [1, 2, 4, 4, 8, 8, 8, 8, 16, 32]


@pytest.mark.parametrize("samples", [5 * HOP, 5 * HOP + 700, 2 * HOP + 1])
def test_offline_encode_in_tiles_equals_one_pass(encoder, samples):
    """Long clips are encoded tile by tile through the stream; the codes do not change."""
    wav = _audio(2, samples, seed=samples)
    whole, frames = encoder.encode(wav)
    tiled = CodecEncoder(encoder.cfg, tile_frames=2)
    tiled.load_state_dict(encoder.state_dict())
    codes, tiled_frames = tiled.eval().encode(wav)
    assert torch.equal(codes, whole) and torch.equal(tiled_frames, frames)
    assert not tiled.is_streaming  # the tiles' stream is closed again
