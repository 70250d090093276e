"""Streaming Code2Wav equals offline, for any push sizes, ragged batches and rollbacks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omnispeech.vocoder import Code2Wav
from tests.vocoder_ref import redraw_vocoder, ref_code2wav, write_omni_folder

TOL = 1e-5
FRAMES = 30


@pytest.fixture(scope="module")
def vocoder(tmp_path_factory):
    # A short window so that 30 frames roll the attention window over many times.
    ref = ref_code2wav(seed=7, sliding_window=8)
    return Code2Wav.from_pretrained(write_omni_folder(tmp_path_factory.mktemp("c2w"), ref))


@pytest.fixture(scope="module")
def codes_and_offline(vocoder):
    codes = torch.randint(0, 64, (2, 16, FRAMES), generator=torch.Generator().manual_seed(0))
    return codes, vocoder(codes)


def _stream(vocoder, codes, sizes):
    pieces, start = [], 0
    with vocoder.streaming(codes.shape[0]):
        for n in sizes:
            pieces.append(vocoder.push(codes[..., start : start + n]).wav)
            start += n
        pieces.append(vocoder.flush().wav)
    return torch.cat(pieces, -1)


def _split(draw_sizes, total):
    sizes, left = [], total
    for n in draw_sizes:
        if left == 0:
            break
        sizes.append(min(n, left))
        left -= sizes[-1]
    if left:
        sizes.append(left)
    return sizes


def test_one_frame_at_a_time(vocoder, codes_and_offline):
    codes, offline = codes_and_offline
    streamed = _stream(vocoder, codes, [1] * FRAMES)
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max() < TOL


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=FRAMES))
def test_random_push_sizes(vocoder, codes_and_offline, sizes):
    codes, offline = codes_and_offline
    streamed = _stream(vocoder, codes, _split(sizes, FRAMES))
    assert (streamed - offline).abs().max() < TOL


def test_each_push_emits_exactly_the_final_samples(vocoder, codes_and_offline):
    """First push: hop - 555 per frame less the delay; then one hop (1920) per frame."""
    codes, _ = codes_and_offline
    with vocoder.streaming(2):
        assert vocoder.push(codes[..., :3]).wav.shape[-1] == 3 * 1920 - 555
        assert vocoder.push(codes[..., 3:4]).wav.shape[-1] == 1920
        assert vocoder.push(codes[..., 4:4]).wav.shape[-1] == 0
        assert vocoder.push(codes[..., 4:9]).wav.shape[-1] == 5 * 1920


def test_future_frames_never_change_past_audio(vocoder):
    g = torch.Generator().manual_seed(3)
    prefix = torch.randint(0, 64, (1, 16, 10), generator=g)
    futures = [torch.randint(0, 64, (1, 16, 8), generator=g) for _ in range(2)]
    emitted = []
    for future in futures:
        with vocoder.streaming(1):
            head = vocoder.push(prefix).wav
            vocoder.push(future)
        emitted.append(head)
        full = vocoder(torch.cat((prefix, future), -1))
        # What was emitted for the prefix is final: the full decode starts with it exactly.
        assert (full[..., : head.shape[-1]] - head).abs().max() < TOL
    assert torch.equal(emitted[0], emitted[1])


@settings(max_examples=8, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=20))
def test_streams_of_one_batch_advance_independently(vocoder, codes_and_offline, steps):
    codes, offline = codes_and_offline
    done = [0, 0]
    got: list[list[torch.Tensor]] = [[], []]
    with vocoder.streaming(2):
        for want in [*steps, (FRAMES, FRAMES)]:
            take = [min(w, FRAMES - d) for w, d in zip(want, done, strict=True)]
            width = max(take)
            piece = torch.full((2, 16, width), -1, dtype=torch.long)  # padding is ignored
            for i in range(2):
                piece[i, :, : take[i]] = codes[i, :, done[i] : done[i] + take[i]]
            for i, wav in enumerate(vocoder.push(piece, torch.tensor(take)).unpadded()):
                got[i].append(wav)
            done = [d + t for d, t in zip(done, take, strict=True)]
    for i in range(2):
        assert (torch.cat(got[i]) - offline[i, 0]).abs().max() < TOL


def test_snapshot_and_rollback(vocoder, codes_and_offline):
    codes, offline = codes_and_offline
    with vocoder.streaming(2):
        first = vocoder.push(codes[..., :5]).wav
        snap = vocoder.get_streaming_state()
        vocoder.push(torch.zeros_like(codes[..., 5:9]))  # a speculative, discarded step
        vocoder.set_streaming_state(snap)
        rest = vocoder.push(codes[..., 5:]).wav
    assert (torch.cat((first, rest), -1) - offline).abs().max() < TOL


def test_tts_flavor_streams_exactly(tmp_path):
    """The TTS-tokenizer flavor (split RVQ, pre-conv, projections, no left trim) at random."""
    from omnispeech.vocoder import Code2WavConfig

    cfg = Code2WavConfig(
        flavor="tts12hz",
        codebook_size=32,
        hidden_size=16,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=12,
        intermediate_size=32,
        num_hidden_layers=2,
        sliding_window=5,
        latent_dim=24,
        decoder_dim=32,
        codebook_dim=16,
    )
    model = Code2Wav(cfg).eval()
    redraw_vocoder(model, seed=2)
    codes = torch.randint(0, 32, (2, 16, 17), generator=torch.Generator().manual_seed(1))
    offline = model(codes)
    assert offline.shape == (2, 1, 1920 * 17) and offline.std() > 0.01
    assert (_stream(model, codes, [1, 3, 1, 5, 7]) - offline).abs().max() < TOL
    model.save_pretrained(tmp_path)
    assert torch.equal(Code2Wav.from_pretrained(tmp_path)(codes), offline)


def test_state_buffers_stay_in_place(vocoder, codes_and_offline):
    """What a CUDA graph needs: after the first push, every step reuses the same buffers."""
    from omnispeech.vocoder.graph import _state_tensors, _still_trimming

    codes, _ = codes_and_offline
    with vocoder.streaming(2):
        vocoder.push(codes[..., :1])
        assert not _still_trimming(vocoder)
        before = [t.data_ptr() for t in _state_tensors(vocoder)]
        for start in range(1, 6):
            vocoder.push(codes[..., start : start + 1])
        assert [t.data_ptr() for t in _state_tensors(vocoder)] == before


@pytest.mark.requires_cuda
@pytest.mark.parametrize("batch", [1, 2])
def test_cuda_graph_streaming_equals_offline(vocoder, codes_and_offline, batch):
    from omnispeech.vocoder import GraphStreamer

    codes, offline = codes_and_offline
    gpu = Code2Wav(vocoder.cfg).cuda().eval()
    gpu.load_state_dict(vocoder.state_dict())
    pieces = []
    with GraphStreamer(gpu, batch_size=batch) as stream:
        for start in range(FRAMES):
            pieces.append(stream.push(codes[:batch, :, start : start + 1].cuda()).cpu())
    assert (torch.cat(pieces, -1) - offline[:batch]).abs().max() < 1e-4
