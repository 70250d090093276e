"""Live transcription: push audio as it arrives, read an updated transcript as it firms up.

The reference serving of Qwen3-ASR re-encodes all audio so far and re-runs the whole prompt on
every new chunk, so its cost grows with the stream. Here nothing is recomputed:

- the AuT encoder streams incrementally (each 8-s window is encoded once, when complete);
- the decoder's KV cache keeps the prompt head and every audio token already seen: a causal
  decoder's keys for a prefix never change, so on each update the cache is rolled back to the
  end of the audio tokens, the new audio tokens are appended, and only the prompt tail and the
  answer are run again;
- the previous answer, minus its last ``unfixed_tokens`` tokens, is fed back as a forced prefix
  (prefilled in one pass), so the transcript grows instead of being regenerated.

Updates come when a window of audio tokens becomes final (every 8 s) and at :meth:`finish`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import torch

from omnispeech.errors import InputError
from omnispeech.pipelines.asr_joint import JointDecoder
from omnispeech.pipelines.asr_prompt import (
    ASR_TEXT,
    parse_answer,
    prompt_parts,
    resolve_language,
    token_budget,
)

if TYPE_CHECKING:
    from omnispeech.pipelines.asr import ASR

SAMPLE_RATE = 16_000


@dataclasses.dataclass(frozen=True)
class PartialTranscript:
    """The transcript of a live stream so far.

    Attributes:
        text: the best transcript of all audio heard so far.
        language: the language named by the model (or forced), None if unknown yet.
        seconds: audio covered by the encoder tokens behind this text, in seconds.
        final: True for the result of :meth:`ASRStream.finish`.
    """

    text: str
    language: str | None
    seconds: float
    final: bool


class ASRStream:
    """A live transcription session over one :class:`~omnispeech.pipelines.ASR` model.

    Use as a context manager::

        with asr.stream(language="en") as live:
            for piece in microphone():               # 16 kHz mono, any piece size
                update = live.push(piece)
                if update is not None:
                    print(update.text)
            print(live.finish().text)

    Args:
        asr: the loaded pipeline.
        language: code or name to force; None to detect.
        context: system-turn text.
        unfixed_tokens: answer tokens the model may revise at each update; None re-decodes
            the whole answer every time (the final text then equals offline transcription).
        max_seconds: longest stream; memory for the decoder cache is reserved up front.
    """

    def __init__(  # noqa: PLR0913 - the session's settings, each independent
        self,
        asr: ASR,
        language: str | None = None,
        context: str = "",
        unfixed_tokens: int | None = 5,
        max_seconds: float = 600.0,
    ) -> None:
        if unfixed_tokens is not None and unfixed_tokens < 0:
            raise InputError(f"unfixed_tokens must be >= 0 or None, got {unfixed_tokens}")
        if max_seconds <= 0:
            raise InputError(f"max_seconds must be positive, got {max_seconds}")
        self.asr = asr
        self.language = resolve_language(language, list(asr.config.languages) or None)
        self.unfixed_tokens = unfixed_tokens
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        head, tail = prompt_parts(context, self.language)
        encode = asr.tokenizer.encode
        self._head = encode(head, add_special_tokens=False).ids
        self._tail = encode(tail, add_special_tokens=False).ids
        max_answer = token_budget(self.max_samples, 1 << 30)
        capacity = (len(self._head) + asr.encoder.cfg.num_tokens(self.max_samples // 160 + 1)
                    + len(self._tail) + max_answer)  # fmt: skip
        self._cache = asr.decoder.new_cache(1, capacity)
        self._answer: list[int] = []
        self._samples = 0
        self._audio_tokens = 0
        self._context = None
        # CTC log-probabilities of the audio tokens so far (joint decoding), one block per update.
        self._ctc: list[np.ndarray] = []

    # -- session ------------------------------------------------------------------------------
    def __enter__(self) -> ASRStream:
        self._context = self.asr.encoder.streaming(1)
        self._context.__enter__()
        with torch.inference_mode():
            self._prefill(self._head)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None

    @torch.inference_mode()
    def push(self, samples: np.ndarray | torch.Tensor) -> PartialTranscript | None:
        """Feed 16 kHz mono samples ``[S]``; an updated transcript when new audio tokens
        became final (every 8 s of audio), otherwise None.

        Raises:
            InvalidAudioError: NaN/Inf samples.
            InputError: the stream would exceed ``max_seconds``, or no session is open.
        """
        if self._context is None:
            raise InputError("push() needs an open session: `with asr.stream() as live:`")
        x = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
        self._samples += x.shape[0]
        if self._samples > self.max_samples:
            raise InputError(
                f"the stream is longer than max_seconds={self.max_samples / SAMPLE_RATE:g}; "
                "open a new stream or raise max_seconds"
            )
        tokens = self.asr.encoder.push_audio(x)
        if tokens.shape[1] == 0:
            return None
        return self._update(tokens[0], final=False)

    @torch.inference_mode()
    def finish(self) -> PartialTranscript:
        """End the stream: encode the rest of the audio and return the final transcript.

        Raises:
            EmptyAudioError: no audio (or less than 10 ms) was pushed.
        """
        if self._context is None:
            raise InputError("finish() needs an open session: `with asr.stream() as live:`")
        tokens = self.asr.encoder.flush()
        result = self._update(tokens[0], final=True)
        self.__exit__()
        return result

    # -- internals ----------------------------------------------------------------------------
    def _prefill(self, ids: list[int]) -> torch.Tensor:
        device = self.asr.decoder.embed_tokens.weight.device
        embeds = self.asr.decoder.embed_tokens(torch.tensor([ids], device=device))
        return self.asr.decoder(embeds, self._cache)

    def _update(self, new_tokens: torch.Tensor, final: bool) -> PartialTranscript:
        asr = self.asr
        # Roll back to the end of the audio tokens; the head and old audio stay cached.
        self._cache.truncate(len(self._head) + self._audio_tokens)
        if new_tokens.shape[0]:
            asr.decoder(new_tokens[None].to(asr.decoder.embed_tokens.weight), self._cache)
            self._audio_tokens += new_tokens.shape[0]
            log_probs = asr.ctc_log_probs(new_tokens)
            if log_probs is not None:
                self._ctc.append(log_probs)
        keep = 0 if self.unfixed_tokens is None else max(0, len(self._answer) - self.unfixed_tokens)
        forced = self._answer[:keep]
        hidden = self._prefill(self._tail + forced)
        budget = max(0, token_budget(self._samples, 1 << 30) - len(forced))
        joint = None
        if self._ctc:
            # CTC scores the whole transcript against all the audio so far: the kept part of
            # the answer enters its prefix as it entered the decoder's.
            log_probs = np.concatenate(self._ctc)
            marker = asr.tokenizer.token_to_id(ASR_TEXT)
            joint = JointDecoder(log_probs, asr.ctc_weight, marker, self.language is not None)
            for token in forced:
                joint.feed(token)
        self._answer = forced + asr.greedy(hidden, self._cache, budget, joint=joint)
        text, language = parse_answer(
            asr.tokenizer.decode(self._answer, skip_special_tokens=False), self.language
        )
        seconds = self._samples / SAMPLE_RATE if final else self._covered_seconds()
        return PartialTranscript(text=text, language=language, seconds=seconds, final=final)

    def _covered_seconds(self) -> float:
        per_chunk = self.asr.encoder.cfg.tokens_per_chunk
        return self._audio_tokens / per_chunk  # whole windows: 13 tokens per second
