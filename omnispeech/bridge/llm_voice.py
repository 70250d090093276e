"""A voice for any LLM: its reply, token by token, into :meth:`TTS.stream`.

:func:`reply_text` runs a Hugging Face causal LM one token at a time and yields the text each
token adds; :func:`speak_reply` hands those pieces to the TTS pipeline, whose ARIA scheduler
lets text enter the talker one token per frame: the first audio chunk comes after the LM's
first few tokens, not after its whole reply, and the LM is only asked for the next token when
the speech needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from omnispeech.core.sampling import SamplingConfig, sample
from omnispeech.errors import InputError
from omnispeech.pipelines import TTS, VoicePrompt

# A decoder that stops inside a multi-byte character shows U+FFFD; wait for the next token.
_PARTIAL = "\ufffd"


@torch.inference_mode()
def reply_tokens(  # noqa: PLR0913 - the generation's settings
    llm: nn.Module,
    prompt_ids: torch.Tensor | list[int],
    max_new_tokens: int = 256,
    stop_ids: Iterable[int] = (),
    sampling: SamplingConfig | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """The LM's next tokens after ``prompt_ids`` (``[L]`` or ``[1, L]``), one by one.

    Stops after a token of ``stop_ids`` (not yielded) or ``max_new_tokens`` tokens. Greedy
    unless ``sampling`` says otherwise (the LM's own repetition penalty is not applied).
    """
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    sampling = sampling or SamplingConfig(do_sample=False)
    stop = set(stop_ids)
    device = llm.get_input_embeddings().weight.device
    ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=device).reshape(1, -1)
    out = llm(input_ids=ids, use_cache=True)
    for step in range(max_new_tokens):
        token = int(sample(out.logits[:, -1], sampling, generator)[0])
        if token in stop:
            return
        yield token
        if step + 1 < max_new_tokens:
            step_ids = torch.tensor([[token]], device=device)
            out = llm(input_ids=step_ids, past_key_values=out.past_key_values, use_cache=True)


def reply_text(tokens: Iterable[int], decode: Callable[[list[int]], str]) -> Iterator[str]:
    """Text pieces of a token stream: each piece is what one more token adds to the decoded
    text (held back while the text ends inside a multi-byte character)."""
    seen: list[int] = []
    done = ""
    for token in tokens:
        seen.append(token)
        text = decode(seen)
        if text.endswith(_PARTIAL) or not text.startswith(done):
            continue
        if len(text) > len(done):
            yield text[len(done) :]
            done = text
    text = decode(seen) if seen else ""
    if text.startswith(done) and len(text) > len(done):
        yield text[len(done) :]


def speak_reply(
    tts: TTS,
    pieces: Iterable[str],
    voice: VoicePrompt | None = None,
    **options: Any,
) -> Iterator[np.ndarray]:
    """Speech for an LLM's text pieces as they come: ``[n]`` float32 chunks at 24 kHz.

    ``pieces`` is read only as far as the speech needs it (e.g. :func:`reply_text` over
    :func:`reply_tokens`); options are those of :class:`omnispeech.pipelines.TTSOptions`.
    The chunks equal :meth:`TTS.synthesize` of the whole text with the same seed.
    """
    return tts.stream(iter(pieces), voice, **options)
