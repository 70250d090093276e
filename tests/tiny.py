"""Tiny tokenizers and reference models for tests (no network, seconds to build)."""

from __future__ import annotations

from tokenizers import Tokenizer

from tests.conftest import TINY_AUDIO, redraw


def ref_asr_model(tok: Tokenizer, vocab_size: int = 320, seed: int = 0):
    """A tiny ``Qwen3ASRForConditionalGeneration`` whose special ids match ``tok``."""
    from transformers import Qwen3ASRConfig, Qwen3ASRForConditionalGeneration

    eos = [tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_end|>")]
    cfg = Qwen3ASRConfig(
        audio_config=dict(TINY_AUDIO),
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=96,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=4096,
            tie_word_embeddings=True,
            rope_theta=1e6,
        ),
        audio_token_id=tok.token_to_id("<|audio_pad|>"),
        eos_token_id=eos,
        pad_token_id=eos[1],
    )
    model = Qwen3ASRForConditionalGeneration._from_config(cfg, attn_implementation="eager").eval()
    redraw(model, std=0.1, seed=seed)
    model.tie_weights()
    return model
