"""The frame loop of text to speech: text feed -> ARIA scheduler -> talker + MTP -> codes.

This is the loop of the released dual-track talkers; a folder trained on the single stream
runs the loop of :mod:`omnispeech.pipelines.tts_single` instead (``SynthesisRequest.single``),
which reuses this module's utterance bookkeeping, stepping and duration guard.

Text is pulled from the caller's pieces only when the speech needs it: the scheduler answers
``WAIT`` when the text item due at the next position has not arrived, and only then is the
next piece read. Each segment of the text (see :mod:`omnispeech.pipelines.tts_text`) is one
utterance: a fresh prompt with the same voice, the talker's cache reused.

A duration guard ends an utterance that never chooses end-of-speech: at most
``GUARD_SECONDS + GUARD_SECONDS_PER_TOKEN * tokens`` of speech per utterance (slowed down by
``speed`` < 1), with a :class:`GenerationWarning`. Released models say about 3-5 BPE tokens
per second, so the guard only catches runaways. A front end whose tokens are shorter sets its
own allowance per token (``SynthesisRequest.seconds_per_token``; phonemes: about 15 a second).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from omnispeech.errors import InputError
from omnispeech.interleave import RatePolicy, Scheduler, SingleStreamPolicy
from omnispeech.pipelines.tts_prompt import (
    TextTrack,
    VoicePrompt,
    control_prefix,
    reference_overlay,
)
from omnispeech.pipelines.tts_text import SEGMENT_END, TextFeed
from omnispeech.talker import GenerationConfig, Talker
from omnispeech.talker.model import TalkerState
from omnispeech.talker.stepper import FrameStepper

GUARD_SECONDS = 3.0
GUARD_SECONDS_PER_TOKEN = 0.6

_EXHAUSTED = object()  # no text left at all


class GenerationWarning(UserWarning):
    """Generation ended differently than the model intended (duration guard, early end)."""


@dataclasses.dataclass
class SynthesisRequest:
    """Everything one synthesis needs (built by :class:`omnispeech.pipelines.tts.TTS`)."""

    talker: Talker
    role_ids: list[int]
    feed: TextFeed
    pieces: Iterator[str]
    voice: VoicePrompt
    language: str
    policy: RatePolicy
    arrangement: str
    generation: GenerationConfig
    generator: torch.Generator
    instruct_ids: list[int] | None = None
    step: str = "eager"  # "eager", "static" (fixed shapes) or "graph" (CUDA graphs)
    single: SingleStreamPolicy | None = None  # a single-stream talker's policy (None: dual)
    # The guard's speech allowance per text token (None: GUARD_SECONDS_PER_TOKEN, for BPE).
    seconds_per_token: float | None = None
    frame_rate: float = 12.5  # the codec's frames per second (12.5 for the released models)

    def pull(self) -> list[int] | None | object:
        """Next tokens of the current segment, ``SEGMENT_END``, or ``_EXHAUSTED``; reads
        pieces from the caller only when nothing is ready."""
        while True:
            out = self.feed.take()
            if out is SEGMENT_END or out:
                return out
            if self.feed.finished:
                return _EXHAUSTED
            piece = next(self.pieces, None)
            if piece is None:
                self.feed.finish()
            elif not isinstance(piece, str):
                raise InputError(f"text pieces must be str, got {type(piece).__name__}")
            else:
                self.feed.add(piece)

    def guard(self, tokens: int) -> int:
        """Most frames of an utterance of ``tokens`` text tokens."""
        per_token = self.seconds_per_token
        if per_token is None:
            per_token = GUARD_SECONDS_PER_TOKEN
        seconds = GUARD_SECONDS + per_token * tokens
        return math.ceil(seconds * self.frame_rate / min(1.0, self.policy.speed))


@torch.inference_mode()
def frames(request: SynthesisRequest) -> Iterator[torch.Tensor]:
    """Generate codes frame by frame, ``[K]`` int64 each, over every segment of the text."""
    track = TextTrack(request.talker)
    cache_holder: list = [None]
    run = _utterance
    if request.single is not None:
        from omnispeech.pipelines.tts_single import single_utterance as run
    while True:
        first = request.pull()
        if first is _EXHAUSTED:
            return
        if first is SEGMENT_END:
            continue
        yield from run(request, track, list(first), cache_holder)


class Utterance:
    """One utterance of a request: its prompt, then the text entering after each frame.

    Built from the first tokens of a segment (reading more of the segment as the prompt
    needs). The frame loop (:func:`frames` for one request, :mod:`omnispeech.pipelines.
    tts_batch` for many) prefills :attr:`prompt` ``[L, hidden]``, then per frame checks
    :meth:`cut`, samples, and feeds :meth:`next_text`; :meth:`finish` closes the segment.
    """

    def __init__(self, request: SynthesisRequest, track: TextTrack, first: list[int]) -> None:
        self.request, self.track = request, track
        talker, voice = request.talker, request.voice
        ids = talker.spec.tokens
        prefix = control_prefix(
            track, request.role_ids, request.language, voice, request.instruct_ids
        )
        self.sched = Scheduler(request.policy)
        self.tokens = list(first)
        if voice.in_context:
            # The overlay needs the text that fits over the reference frames (all of it for
            # the full arrangement); then the rest enters one token per frame.
            room = voice.ref_codes.shape[1] + 1 - len(voice.ref_text_ids)
            closed = False
            while not closed and (request.arrangement == "full" or len(self.tokens) < room):
                got = request.pull()
                if got is SEGMENT_END or got is _EXHAUSTED:
                    closed = True
                else:
                    self.tokens.extend(got)
            block, trailing, self.end_in_prompt = reference_overlay(
                track, voice, self.tokens, closed, request.arrangement
            )
            self.sched.push(trailing)
            if closed:
                self.sched.close()
            self.prompt = torch.cat((prefix, block))
        else:
            self.sched.push(first)
            self.end_in_prompt = False
            # Text-only lead-in positions carry codec_pad; the first speech position codec_bos.
            codec_pad, codec_bos = track.codec([ids.codec_pad, ids.codec_bos])
            lead = []
            while True:
                pos = self.sched.next()
                if pos.is_wait:
                    self._more()
                    continue
                if pos.is_lead_in:
                    lead.append(track.item(pos.text) + codec_pad)
                    continue
                lead.append(track.item(pos.text) + codec_bos)
                break
            self.prompt = torch.cat((prefix, torch.stack(lead)))
        self.capacity = min(
            talker.spec.talker.max_positions,
            self.prompt.shape[0] + request.guard(request.feed.max_tokens) + 2,
        )
        self.made = 0

    def _more(self) -> None:
        got = self.request.pull()
        if got is SEGMENT_END or got is _EXHAUSTED:
            self.sched.close()
        else:
            self.sched.push(got)
            self.tokens.extend(got)

    def cut(self, used: int) -> bool:
        """Whether the duration guard ends the utterance now (with a warning), after
        :attr:`made` frames and ``used`` cached positions."""
        limit = self.request.guard(len(self.tokens))
        if self.made >= limit or used >= self.capacity:
            seconds = self.made / self.request.frame_rate
            warnings.warn(
                f"speech did not end after {self.made} frames ({seconds:.1f} s) "
                f"for {len(self.tokens)} text tokens; cut by the duration guard",
                GenerationWarning,
                stacklevel=4,
            )
            return True
        return False

    def next_text(self) -> torch.Tensor:
        """Counts the frame just made; the text-track vector ``[hidden]`` to feed with it."""
        self.made += 1
        if self.end_in_prompt:
            return self.track.pad
        while (pos := self.sched.next()).is_wait:
            self._more()
        return self.track.item(pos.text)

    def finish(self) -> None:
        """The model may end before all of the segment's text entered: drop the rest of it
        so the next segment starts where it should."""
        while not self.sched.closed:
            self._more()
        if not self.end_in_prompt and not self.sched.done:
            warnings.warn(
                "speech ended before all of its text was spoken", GenerationWarning, stacklevel=4
            )


def next_utterance(request: SynthesisRequest, track: TextTrack) -> Utterance | None:
    """The request's next utterance, or None when its text is exhausted."""
    while True:
        first = request.pull()
        if first is _EXHAUSTED:
            return None
        if first is not SEGMENT_END:
            return Utterance(request, track, list(first))


def _utterance(
    request: SynthesisRequest, track: TextTrack, first: list[int], cache_holder: list
) -> Iterator[torch.Tensor]:
    utt = Utterance(request, track, first)
    state = request.talker.start(utt.prompt[None], utt.capacity, cache_holder[0])
    cache_holder[0] = state.cache
    stepper = Stepper(request, state)
    while not utt.cut(state.cache.length):
        codes = stepper.sample()
        if codes is None:
            break
        yield codes[0]
        stepper.advance(codes, utt.next_text())
    utt.finish()


class Stepper(FrameStepper):
    """:class:`~omnispeech.talker.stepper.FrameStepper` with a request's talker, sampling,
    generator and step."""

    def __init__(self, request: SynthesisRequest, state: TalkerState) -> None:
        super().__init__(request.talker, state, request.generation, request.generator, request.step)


@torch.inference_mode()
def stream_audio(decoder, request: SynthesisRequest, ref: torch.Tensor | None):
    """Frames through the streaming vocoder; the reference frames' own audio is dropped."""
    device = next(decoder.parameters()).device
    with decoder.streaming(1):
        skip = 0
        if ref is not None:
            skip = ref.shape[1] * decoder.hop_length
            _, skip = _cut(decoder.push(ref[None].to(device)), skip)
        for frame in frames(request):
            wav, skip = _cut(decoder.push(frame[None, :, None].to(device)), skip)
            if wav.size:
                yield wav
        wav, skip = _cut(decoder.flush(), skip)
        if wav.size:
            yield wav


def _cut(chunk, skip: int) -> tuple[np.ndarray, int]:
    """Drop the first ``skip`` samples of the stream (the reference's audio)."""
    wav = chunk.wav[0, 0, : int(chunk.lengths[0])].cpu().numpy()
    if skip >= len(wav):
        return wav[:0], skip - len(wav)
    return wav[skip:], 0
