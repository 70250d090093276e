"""Ears on causal LMs that are not Qwen: tiny random Llama and GPT-2 from transformers.

The encoder's tokens must land exactly at the placeholder positions, and a prefill streamed
while the audio arrives must leave the LM where a one-shot prefill of the same prompt does:
the same logits after the prompt and the same cache (checked by the logits of the next step).
"""

from __future__ import annotations

import pytest
import torch

from omnispeech.bridge import Ears
from omnispeech.encoder import AudioEncoder, EncoderConfig
from omnispeech.errors import CheckpointError, InputError
from tests.conftest import redraw

WIDTH = 48
AUDIO = 7  # placeholder id of the tiny LMs
PREFIX = [1, 5, 9, 11]  # e.g. <|im_start|>user\n<|audio_start|>
SUFFIX = [12, 2, 17, 3, 4]  # e.g. <|audio_end|><|im_end|>\n<|im_start|>assistant\n


def _llm(family: str) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if family == "llama":
        cfg = LlamaConfig(
            vocab_size=64,
            hidden_size=WIDTH,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
        )
        model = LlamaForCausalLM._from_config(cfg, attn_implementation="eager")
    else:
        cfg = GPT2Config(vocab_size=64, n_embd=WIDTH, n_layer=2, n_head=4, n_positions=512)
        model = GPT2LMHeadModel._from_config(cfg, attn_implementation="eager")
    redraw(model, std=0.1, seed=1)
    return model.eval()


def _encoder(width: int = WIDTH) -> AudioEncoder:
    cfg = EncoderConfig(
        d_model=32,
        encoder_layers=1,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        output_dim=width,
        downsample_hidden_size=8,
    )
    torch.manual_seed(2)
    enc = AudioEncoder(cfg).eval()
    redraw(enc, std=0.1, seed=3)
    return enc


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def ears(request) -> Ears:
    return Ears(_encoder(), _llm(request.param), AUDIO)


def _features(frames: int) -> torch.Tensor:
    return torch.randn(1, 128, frames, generator=torch.Generator().manual_seed(4)) * 0.5 - 0.5


def test_audio_tokens_land_at_the_placeholders(ears):
    audio = torch.randn(3, WIDTH)
    ids = torch.tensor([[1, AUDIO, 5, AUDIO, AUDIO, 9]])
    embeds = ears.embed(ids, audio)
    table = ears.llm.get_input_embeddings().weight
    assert embeds.shape == (1, 6, WIDTH)
    assert torch.equal(embeds[0, [1, 3, 4]], audio)
    for pos, token in ((0, 1), (2, 5), (5, 9)):
        assert torch.equal(embeds[0, pos], table[token])
    with pytest.raises(InputError, match="3 audio placeholders .* 2 tokens"):
        ears.embed(ids, audio[:2])


@pytest.mark.parametrize("chunks", [[37, 260, 1, 99, 403, 300], [1100]])
def test_streamed_prefill_equals_one_shot(ears, chunks):
    feats = _features(sum(chunks))  # 11 s: the first 8-s window is final before the end
    with torch.inference_mode():
        tokens = ears.encoder(feats).tokens[0]
    n = tokens.shape[0]
    ids = torch.tensor([PREFIX + [AUDIO] * n + SUFFIX])
    want = ears.prefill(ids, tokens, hidden_layer=1)

    listening = ears.listen(torch.tensor([PREFIX]), hidden_layer=1)
    entered, start = [], 0
    for size in chunks:
        entered.append(listening.push_features(feats[..., start : start + size]))
        start += size
    got = listening.finish(torch.tensor([SUFFIX]))

    assert torch.equal(got.input_ids, ids)
    if len(chunks) > 1:
        assert sum(entered) == 104  # one whole window entered the LM while audio still came
    assert torch.allclose(got.embeds, want.embeds, atol=1e-6)
    assert torch.allclose(got.hidden, want.hidden, atol=1e-5)
    diff = (got.logits - want.logits).abs().max()
    assert diff < 1e-5, diff
    # The caches agree too: one more token gives the same scores from both.
    step = torch.tensor([[int(want.logits.argmax())]])
    with torch.inference_mode():
        a = ears.llm(input_ids=step, past_key_values=want.cache, use_cache=True).logits
        b = ears.llm(input_ids=step, past_key_values=got.cache, use_cache=True).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_streamed_prefill_from_samples(ears):
    wav = 0.1 * torch.randn(16000 * 2, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        tokens = ears.encoder.encode_audio(wav)
    listening = ears.listen(torch.tensor([PREFIX]))
    for piece in wav.split(1600):
        listening.push_audio(piece)
    got = listening.finish(torch.tensor([SUFFIX]))
    want = ears.prefill(torch.tensor([PREFIX + [AUDIO] * tokens.shape[0] + SUFFIX]), tokens)
    assert got.input_ids.shape == want.input_ids.shape
    assert torch.allclose(got.logits, want.logits, atol=1e-4)
    with pytest.raises(InputError, match="finished"):
        listening.push_audio(wav[:160])


def test_encoder_and_lm_widths_must_match():
    with pytest.raises(CheckpointError, match="32-wide tokens but the LM embeds tokens in 48"):
        Ears(_encoder(width=32), _llm("llama"), AUDIO)
