"""Helpers for tests and benchmarks that must run offline (no real vocabulary, no weights).

:func:`tiny_tokenizer` builds a byte-level BPE tokenizer with the Qwen special tokens, enough to
build Qwen3-ASR prompts for small random models without the real 151k-token vocabulary.
:func:`torchrun_train` runs ``omnispeech train KIND`` as two CPU processes, and
:func:`read_log` reads a run's ``log.jsonl`` by step, for the trainers' multi-process tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers.pre_tokenizers import ByteLevel

# The special tokens a Qwen3-ASR prompt and answer use.
QWEN_ASR_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_end|>",
    "<|audio_pad|>", "<asr_text>",
)  # fmt: skip


def tiny_tokenizer(specials: tuple[str, ...] = QWEN_ASR_SPECIALS) -> Tokenizer:
    """A byte-level BPE tokenizer: the 256 byte symbols, five merges, then ``specials``.

    The specials get the ids right after the vocabulary (261, 262, ...); a model built for this
    tokenizer takes its special ids from :meth:`Tokenizer.token_to_id`.
    """
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("a", "n"), ("i", "n")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # Added tokens with fixed ids are declared in the serialised form, one dict per token.
    data = json.loads(tok.to_str())
    data["added_tokens"] = [
        {"id": len(vocab) + i, "content": content, "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": True}
        for i, content in enumerate(specials)
    ]  # fmt: skip
    return Tokenizer.from_str(json.dumps(data))


def torchrun_train(kind: str, config: Path, out: Path, steps: int) -> None:
    """Run ``omnispeech train KIND`` under torchrun as 2 CPU processes (gloo, one thread
    each, so that they do not fight over two cores) until ``steps``.

    Raises:
        AssertionError: the run failed; the message is the end of its stderr.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "omnispeech", "train", kind, "--config", str(config), "--out", str(out),
        "--steps", str(steps), "--quiet",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def read_log(out: Path) -> dict[int, dict]:
    """A run's ``OUT/log.jsonl``: step -> the record logged at it (the last one wins)."""
    lines = (Path(out) / "log.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines)}
