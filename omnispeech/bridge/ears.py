"""Ears for any causal LM: AuT audio tokens spliced into the LM's input embeddings.

A prompt holds one placeholder id (``<|audio_pad|>`` in the Qwen chat template) per audio
token; :meth:`Ears.embed` replaces the LM's embeddings at those positions by the encoder's
tokens, in order. The encoder's tokens are already in the LM's width: the checkpoint's
projector (``proj1`` -> GELU -> ``proj2``) is the last part of :class:`AudioEncoder`.

While a person speaks, :meth:`Ears.listen` prefills as it goes: the streaming encoder makes its
tokens final one 8-s attention window at a time (or at the end of the audio), and each final
token enters the LM's KV cache at once, so when the speaker stops only the last window and the
rest of the prompt remain to be run. The result equals a one-shot prefill of the same prompt.

The LM is any Hugging Face causal LM (``LlamaForCausalLM``, ``GPT2LMHeadModel``, a Qwen, ...):
it is called with ``inputs_embeds``, ``past_key_values`` and ``use_cache=True`` only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from omnispeech.encoder import AudioEncoder
from omnispeech.errors import CheckpointError, InputError


@dataclasses.dataclass(frozen=True)
class Prefill:
    """An LM prompt after prefill.

    Attributes:
        input_ids: ``[1, L]`` the prompt, one placeholder id per audio token.
        embeds: ``[1, L, H]`` the LM's input embeddings with the audio tokens spliced in.
        logits: ``[1, V]`` the LM's scores for the token after the prompt.
        cache: the LM's ``past_key_values`` holding the whole prompt.
        hidden: ``[1, L, H]`` the LM's hidden state number ``hidden_layer`` (0 = input
            embeddings, i = output of layer i) when one was asked for, else None.
    """

    input_ids: torch.Tensor
    embeds: torch.Tensor
    logits: torch.Tensor
    cache: Any
    hidden: torch.Tensor | None


class Ears:
    """An :class:`AudioEncoder` joined to a causal LM.

    Args:
        encoder: the AuT encoder with its projector (``encoder.out_dim`` = the LM width).
        llm: a Hugging Face causal LM (``get_input_embeddings()``, ``forward(inputs_embeds,
            past_key_values, use_cache)`` returning ``logits`` and ``past_key_values``).
        audio_token_id: the placeholder id that marks audio positions in prompts.

    Raises:
        CheckpointError: the encoder's tokens are not as wide as the LM's embeddings.
    """

    def __init__(self, encoder: AudioEncoder, llm: nn.Module, audio_token_id: int) -> None:
        width = llm.get_input_embeddings().embedding_dim
        if encoder.out_dim != width:
            raise CheckpointError(
                f"the audio encoder makes {encoder.out_dim}-wide tokens but the LM embeds "
                f"tokens in {width}: they come from different models"
            )
        self.encoder = encoder
        self.llm = llm
        self.audio_token_id = audio_token_id

    def embed(self, input_ids: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """The LM's input embeddings with ``audio`` at the placeholder positions.

        Args:
            input_ids: ``[1, L]`` (or ``[L]``) prompt ids.
            audio: ``[N, H]`` encoder tokens; N must equal the number of placeholders.

        Returns:
            ``[1, L, H]`` in the LM's dtype.

        Raises:
            InputError: the prompt has a different number of placeholders than ``audio`` rows.
        """
        ids = input_ids.reshape(1, -1)
        mask = ids == self.audio_token_id
        count = int(mask.sum())
        if count != audio.shape[0]:
            raise InputError(
                f"the prompt has {count} audio placeholders (id {self.audio_token_id}) but the "
                f"audio makes {audio.shape[0]} tokens; put one placeholder per token"
            )
        table = self.llm.get_input_embeddings()
        embeds = table(ids.to(table.weight.device))
        if count:
            embeds = embeds.masked_scatter(mask[..., None].to(embeds.device), audio.to(embeds))
        return embeds

    @torch.inference_mode()
    def prefill(
        self, input_ids: torch.Tensor, audio: torch.Tensor | None = None, hidden_layer: int = -1
    ) -> Prefill:
        """One-shot prefill of a prompt with its audio tokens ``[N, H]`` (None: no audio).

        ``hidden_layer`` >= 0 also returns that hidden state of every position.
        """
        ids = input_ids.reshape(1, -1)
        if audio is None:
            audio = torch.zeros(0, self.encoder.out_dim)
        embeds = self.embed(ids, audio)
        logits, cache, hidden = _run(self.llm, embeds, None, hidden_layer)
        return Prefill(ids, embeds, logits, cache, hidden)

    def listen(self, prefix_ids: torch.Tensor, hidden_layer: int = -1) -> Listening:
        """Start a streamed prefill: ``prefix_ids`` ``[1, P]`` is the prompt before the audio
        (e.g. ``<|im_start|>user\\n<|audio_start|>``); it is run now."""
        return Listening(self, prefix_ids.reshape(1, -1), hidden_layer)


@torch.inference_mode()
def prefill_text(llm: nn.Module, input_ids: torch.Tensor, hidden_layer: int = -1) -> Prefill:
    """One-shot prefill of a prompt without audio (any causal LM, no encoder needed)."""
    ids = input_ids.reshape(1, -1)
    table = llm.get_input_embeddings()
    embeds = table(ids.to(table.weight.device))
    logits, cache, hidden = _run(llm, embeds, None, hidden_layer)
    return Prefill(ids, embeds, logits, cache, hidden)


def _run(
    llm: nn.Module, embeds: torch.Tensor, cache: Any, hidden_layer: int
) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
    """One LM call over ``embeds`` ``[1, n, H]`` continuing ``cache``."""
    out = llm(
        inputs_embeds=embeds,
        past_key_values=cache,
        use_cache=True,
        output_hidden_states=hidden_layer >= 0,
    )
    hidden = out.hidden_states[hidden_layer] if hidden_layer >= 0 else None
    return out.logits[:, -1], out.past_key_values, hidden


class Listening:
    """A prefill that advances while the audio arrives (see :meth:`Ears.listen`).

    Feed 16 kHz samples with :meth:`push_audio` (or log-mel frames with :meth:`push_features`)
    and end with :meth:`finish`, which runs the rest of the prompt and returns the
    :class:`Prefill`. Every audio token enters the LM as soon as the encoder makes it final.
    """

    def __init__(self, ears: Ears, prefix_ids: torch.Tensor, hidden_layer: int) -> None:
        self.ears = ears
        self.hidden_layer = hidden_layer
        self._ids = [prefix_ids.cpu()]
        self._embeds: list[torch.Tensor] = []
        self._hidden: list[torch.Tensor] = []
        self._cache: Any = None
        self._logits: torch.Tensor | None = None
        self._context = ears.encoder.streaming(1)
        self._context.__enter__()
        self._open = True
        if prefix_ids.numel():
            self._feed(ears.embed(prefix_ids, torch.zeros(0, ears.encoder.out_dim)))

    @property
    def audio_tokens(self) -> int:
        """Audio tokens in the LM's cache so far."""
        return sum(int((ids == self.ears.audio_token_id).sum()) for ids in self._ids[1:])

    @torch.inference_mode()
    def _feed(self, embeds: torch.Tensor) -> None:
        if embeds.shape[1] == 0:
            return
        self._logits, self._cache, hidden = _run(
            self.ears.llm, embeds, self._cache, self.hidden_layer
        )
        self._embeds.append(embeds)
        if hidden is not None:
            self._hidden.append(hidden)

    def _tokens(self, tokens: torch.Tensor) -> int:
        n = tokens.shape[1]
        if n:
            self._ids.append(torch.full((1, n), self.ears.audio_token_id, dtype=torch.long))
            table = self.ears.llm.get_input_embeddings()
            self._feed(tokens.to(device=table.weight.device, dtype=table.weight.dtype))
        return n

    def close(self) -> None:
        """Abandon the prefill: end the encoder's stream (done by :meth:`finish` too)."""
        if self._open:
            self._context.__exit__(None, None, None)
            self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise InputError("this prefill has finished; start a new one with Ears.listen")

    def push_audio(self, samples: np.ndarray | torch.Tensor) -> int:
        """Feed 16 kHz mono samples ``[S]``; returns the audio tokens that entered the LM."""
        self._check_open()
        return self._tokens(self.ears.encoder.push_audio(samples))

    def push_features(self, frames: torch.Tensor) -> int:
        """Feed log-mel frames ``[1, n_mels, t]``; returns the audio tokens that entered."""
        self._check_open()
        return self._tokens(self.ears.encoder.push_features(frames))

    def finish(self, suffix_ids: torch.Tensor) -> Prefill:
        """End the audio, run its last tokens and ``suffix_ids`` ``[1, S]`` (e.g.
        ``<|audio_end|><|im_end|>\\n<|im_start|>assistant\\n``); returns the whole prefill."""
        self._check_open()
        try:
            self._tokens(self.ears.encoder.flush())
        finally:
            self.close()
        suffix = suffix_ids.reshape(1, -1).cpu()
        if suffix.numel():
            self._ids.append(suffix)
            self._feed(self.ears.embed(suffix, torch.zeros(0, self.ears.encoder.out_dim)))
        if self._logits is None:
            raise InputError("an empty prompt: nothing was prefilled")
        hidden = torch.cat(self._hidden, dim=1) if self._hidden else None
        ids = torch.cat(self._ids, dim=1)
        return Prefill(ids, torch.cat(self._embeds, dim=1), self._logits, self._cache, hidden)
