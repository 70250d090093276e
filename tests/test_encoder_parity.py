"""AuT parity with transformers 5.23.0 on tiny random configs loaded from saved folders."""

from __future__ import annotations

import torch

from omnispeech.encoder import AudioEncoder
from omnispeech.testing import tiny_tokenizer
from tests.conftest import TINY_AUDIO, redraw, ref_omni_encoder
from tests.tiny import ref_asr_model, tiny_omni_model

# Lengths in mel frames: several full 1-s chunks + a partial one, a window boundary (8 s =
# 800 frames), exact chunk multiples and a sub-chunk audio.
LENGTHS = [1234, 250, 57, 100, 801]


def _batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.zeros(len(lengths), 128, max(lengths))
    for i, n in enumerate(lengths):
        feats[i, :, :n] = torch.randn(128, n, generator=g)
    return feats, torch.tensor(lengths)


def _ref_omni(ref, feats: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    packed = torch.cat([feats[i, :, : int(n)] for i, n in enumerate(lengths)], dim=1)
    with torch.no_grad():
        out = ref(input_features=packed, feature_lens=lengths).last_hidden_state
    sizes = [ref_tokens(int(n)) for n in lengths]
    return list(out.split(sizes))


def _omni_max_diff(ref, enc: AudioEncoder, lengths: list[int], seed: int) -> float:
    feats, lens = _batch(lengths, seed=seed)
    with torch.no_grad():
        ours = enc(feats, lens)
    return _compare(ours, _ref_omni(ref, feats, lens), lens)


def ref_tokens(n: int) -> int:
    return 13 * (n // 100) + -(-(n % 100) // 8)


def _compare(ours, refs, lengths) -> float:
    worst = 0.0
    for i, r in enumerate(refs):
        assert int(ours.lengths[i]) == r.shape[0] == ref_tokens(int(lengths[i]))
        worst = max(worst, (ours.tokens[i, : r.shape[0]] - r).abs().max().item())
        assert not ours.tokens[i, r.shape[0] :].any(), "padding tokens must be zero"
    return worst


def test_omni_released_layout_matches_reference(omni_encoder_folder):
    ref, folder = omni_encoder_folder
    enc = AudioEncoder.from_pretrained(folder)
    assert _omni_max_diff(ref, enc, LENGTHS, seed=0) < 1e-5


def test_omni_standalone_save_pretrained_folder(tmp_path):
    ref = ref_omni_encoder()
    ref.save_pretrained(tmp_path)
    enc = AudioEncoder.from_pretrained(tmp_path)
    assert _omni_max_diff(ref, enc, [345, 1000], seed=1) < 1e-5


def test_omni_batch_without_full_chunk_pads_like_reference(omni_encoder_folder):
    # No audio reaches 100 frames: Qwen3-Omni pads chunks only to the longest (here 57).
    ref, folder = omni_encoder_folder
    enc = AudioEncoder.from_pretrained(folder)
    assert _omni_max_diff(ref, enc, [57, 23, 8], seed=2) < 1e-5


def test_asr_hf_layout_matches_reference(tmp_path):
    ref = ref_asr_model(tiny_tokenizer())
    ref.save_pretrained(tmp_path)
    enc = AudioEncoder.from_pretrained(tmp_path)
    lengths = [1234, 250, 57]
    feats, lens = _batch(lengths, seed=3)
    t_pad = -(-max(lengths) // 100) * 100  # the reference requires whole chunks
    padded = torch.nn.functional.pad(feats, (0, t_pad - feats.shape[-1]))
    mask = (torch.arange(t_pad)[None] < lens[:, None]).long()
    with torch.no_grad():
        out = ref.model.get_audio_features(padded, mask, return_dict=True).pooler_output
        ours = enc(feats, lens)
    refs = list(out.split([ref_tokens(n) for n in lengths]))
    assert _compare(ours, refs, lens) < 1e-5


def test_asr_standalone_encoder_without_projection(tmp_path):
    from transformers import Qwen3ASREncoder, Qwen3ASREncoderConfig

    ref = Qwen3ASREncoder._from_config(
        Qwen3ASREncoderConfig(**TINY_AUDIO), attn_implementation="eager"
    ).eval()
    redraw(ref, seed=4)
    ref.save_pretrained(tmp_path)
    enc = AudioEncoder.from_pretrained(tmp_path)
    assert enc.out_dim == TINY_AUDIO["d_model"]
    lengths = [300, 137]
    feats, lens = _batch(lengths, seed=5)
    padded = torch.nn.functional.pad(feats, (0, 300 - feats.shape[-1]))
    mask = (torch.arange(300)[None] < lens[:, None]).long()
    with torch.no_grad():
        out = ref(input_features=padded, input_features_mask=mask).last_hidden_state
        ours = enc(feats, lens)
    refs = list(out.split([ref_tokens(n) for n in lengths]))
    assert _compare(ours, refs, lens) < 1e-5


def test_save_pretrained_round_trip(tmp_path, omni_encoder_folder):
    _, folder = omni_encoder_folder
    enc = AudioEncoder.from_pretrained(folder)
    enc.save_pretrained(tmp_path / "own")
    again = AudioEncoder.from_pretrained(tmp_path / "own")
    feats, lengths = _batch([420], seed=6)
    with torch.no_grad():
        assert torch.equal(enc(feats, lengths).tokens, again(feats, lengths).tokens)


def test_full_omni_checkpoint_saved_by_transformers(tmp_path):
    """The whole (tiny) Qwen3-Omni model saved by transformers: the encoder reads only
    ``thinker.audio_tower.*`` and matches the live audio tower."""
    model = tiny_omni_model(audio_output=False)
    tower = model.thinker.model.audio_tower  # the live 5.23 tree; saved as thinker.audio_tower
    redraw(tower, seed=7)
    model.save_pretrained(tmp_path)
    enc = AudioEncoder.from_pretrained(tmp_path)
    assert _omni_max_diff(tower, enc, [1234, 250, 57], seed=8) < 1e-5


def test_omni_streaming_matches_reference_for_short_and_long_audio(omni_encoder_folder):
    ref, folder = omni_encoder_folder
    enc = AudioEncoder.from_pretrained(folder)
    for n in (57, 1234):
        feats, lengths = _batch([n], seed=n)
        with enc.streaming(1):
            pieces = [enc.push_features(feats[..., i : i + 37]) for i in range(0, n, 37)]
            streamed = torch.cat([*pieces, enc.flush()], dim=1)[0]
        expected = _ref_omni(ref, feats, lengths)[0]
        assert streamed.shape == expected.shape
        assert (streamed - expected).abs().max().item() < 1e-5
