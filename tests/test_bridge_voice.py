"""A voice for any LLM: a tiny random Llama's greedy reply, token by token, into TTS.stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnispeech.bridge import reply_text, reply_tokens, speak_reply
from omnispeech.errors import InputError
from omnispeech.pipelines import TTS
from tests.conftest import redraw
from tests.tts_ref import short_guard, tiny_tts

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "ran", "far", "away"] * 7  # 70 ids
STOP = 69


def _decode(ids: list[int]) -> str:
    return "".join(" " + WORDS[i] if n else WORDS[i].capitalize() for n, i in enumerate(ids))


@pytest.fixture(scope="module")
def llm():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=70,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    model = LlamaForCausalLM._from_config(cfg, attn_implementation="eager").eval()
    redraw(model, std=0.3, seed=7)
    return model


@pytest.fixture(scope="module")
def tts(tmp_path_factory):
    return TTS.from_pretrained(tiny_tts(tmp_path_factory.mktemp("tts")))


@pytest.fixture(autouse=True)
def _short_guard(monkeypatch):
    # Random talkers never end by themselves: a short duration guard ends each utterance.
    with short_guard(monkeypatch, 1.0, 0.24):
        yield


def test_reply_tokens_equal_greedy_generate(llm):
    prompt = torch.tensor([[3, 14, 15, 9, 2]])
    with torch.no_grad():
        want = llm.generate(prompt, max_new_tokens=12, do_sample=False, min_new_tokens=12)
    got = list(reply_tokens(llm, prompt, max_new_tokens=12))
    assert got == want[0, 5:].tolist()
    with pytest.raises(InputError, match="max_new_tokens"):
        next(reply_tokens(llm, prompt, max_new_tokens=0))


def test_reply_text_pieces_concatenate_to_the_decoded_reply():
    ids = [1, 2, 5, 0, 8]
    pieces = list(reply_text(iter(ids), _decode))
    assert pieces == ["Cat", " sat", " mat", " the", " far"]
    assert "".join(pieces) == _decode(ids)
    # A piece that ends inside a character waits for the next token.
    partial = {1: "a\ufffd", 2: "ab"}
    assert list(reply_text(iter([7, 7]), lambda s: partial[len(s)])) == ["ab"]


def test_speech_starts_before_the_llm_finishes_and_equals_offline(llm, tts):
    prompt = [3, 14, 15, 9, 2]
    pulled = []

    def counted():
        for token in reply_tokens(llm, prompt, max_new_tokens=12, stop_ids=[STOP]):
            pulled.append(token)
            yield token

    stream = speak_reply(tts, reply_text(counted(), _decode), seed=3, language="english")
    first = next(stream)
    assert first.size > 0 and len(pulled) < 12  # audio out while the LLM still has to write
    chunks = [first, *stream]
    assert len(pulled) == 12
    offline = tts.synthesize(_decode(pulled), seed=3, language="english")
    streamed = np.concatenate(chunks)
    assert streamed.shape == offline.shape
    assert np.abs(streamed - offline).max() < 1e-5
