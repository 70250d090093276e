"""The Qwen tokenizer rebuilt from vocab.json + merges.txt + tokenizer_config.json (the files the
released Qwen3-ASR folders ship) encodes like transformers' Qwen2 tokenizer."""

from __future__ import annotations

import json

import pytest

from omnispeech.errors import TokenizerError
from omnispeech.pipelines.tokenizer import load_tokenizer, special_id
from omnispeech.testing import tiny_tokenizer

TEXTS = [
    "<|im_start|>system\nHello, world! It's 2026.<|im_end|>\n",
    "language English<asr_text>the thin man's 12 hats   and\tthe tab",
    "Grüße aus Köln — 你好，世界 — こんにちは",
]


def _write_slow_files(folder):
    tok = tiny_tokenizer()
    model = json.loads(tok.to_str())["model"]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    added = {
        str(tok.token_to_id(t)): {"content": t, "special": True, "lstrip": False,
                                  "rstrip": False, "normalized": False, "single_word": False}
        for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>",
                  "<|audio_end|>", "<|audio_pad|>", "<asr_text>")
    }  # fmt: skip
    (folder / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": added}))
    return tok


def test_vocab_and_merges_match_transformers(tmp_path):
    from transformers import Qwen2Tokenizer

    tiny = _write_slow_files(tmp_path)
    ours = load_tokenizer(tmp_path)
    ref = Qwen2Tokenizer.from_pretrained(tmp_path)  # reads the same three files
    assert special_id(ours, "<|audio_pad|>") == tiny.token_to_id("<|audio_pad|>")
    for text in TEXTS:
        ids = ours.encode(text, add_special_tokens=False).ids
        assert ids == ref.encode(text, add_special_tokens=False), text
        assert ours.decode(ids, skip_special_tokens=False) == text


def test_missing_tokenizer_files(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(TokenizerError, match="unreadable"):
        load_tokenizer(tmp_path)


def test_unknown_special_token_is_named(tmp_path):
    with pytest.raises(TokenizerError, match="no <|nope|> token"):
        special_id(tiny_tokenizer(), "<|nope|>")
