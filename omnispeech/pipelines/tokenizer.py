"""The Qwen byte-level BPE tokenizer, read by the ``tokenizers`` library from a model folder.

``tokenizer.json`` is used when present. Otherwise the tokenizer is rebuilt from ``vocab.json``
+ ``merges.txt`` with the Qwen2 pre-tokenisation rule and the added tokens of
``tokenizer_config.json`` (the files the released Qwen3-ASR folders ship).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from omnispeech.errors import TokenizerError

# Qwen2/Qwen3 split rule: contractions, letter runs with one leading non-letter, single digits,
# punctuation runs, newlines, and whitespace (keeping the last space for the next word).
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """Build the tokenizer of a checkpoint folder.

    Raises:
        TokenizerError: neither ``tokenizer.json`` nor ``vocab.json`` + ``merges.txt`` exist.
    """
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        try:
            return Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:
            raise TokenizerError(f"{folder / 'tokenizer.json'}: unreadable ({exc})") from exc
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    if not (vocab.is_file() and merges.is_file()):
        raise TokenizerError(
            f"{folder}: no tokenizer (expected tokenizer.json, or vocab.json and merges.txt)"
        )
    tok = qwen_byte_level(models.BPE.from_file(str(vocab), str(merges), unk_token=None))
    config_file = folder / "tokenizer_config.json"
    if config_file.is_file():
        added = json.loads(config_file.read_text()).get("added_tokens_decoder", {})
        ordered = sorted(added.items(), key=lambda kv: int(kv[0]))
        tokens = [
            AddedToken(v["content"], special=v.get("special", True), normalized=False)
            for _, v in ordered
        ]
        tok.add_special_tokens(tokens)
        for token_id, entry in ordered:
            if tok.token_to_id(entry["content"]) != int(token_id):
                raise TokenizerError(
                    f"{config_file}: added token {entry['content']!r} should have id {token_id}, "
                    f"got {tok.token_to_id(entry['content'])}"
                )
    return tok


def qwen_byte_level(model: models.Model) -> Tokenizer:
    """A tokenizer around ``model`` (a byte-level BPE) with Qwen's NFC normalisation,
    pre-tokenisation and byte-level decoding; used for the released vocabularies and for the
    small ones omnispeech trains for its own models."""
    tok = Tokenizer(model)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def special_id(tok: Tokenizer, token: str) -> int:
    """The id of a special token such as ``<|audio_pad|>``.

    Raises:
        TokenizerError: the tokenizer does not know the token.
    """
    token_id = tok.token_to_id(token)
    if token_id is None:
        raise TokenizerError(f"the tokenizer has no {token} token; is this a Qwen3-ASR model?")
    return token_id
