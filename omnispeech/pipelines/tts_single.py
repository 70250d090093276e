"""The frame loop of single-stream (ARIA) talkers: text items and frames at separate positions.

A talker trained with ``model.arrangement: "single"`` (``omnispeech train tts``) reads the
sequence the trainer's ``arrange_single`` builds: the role header and control prefix of the
released models (ending with ``tts_bos`` + ``codec_pad``), then the positions of the
:class:`~omnispeech.interleave.SingleStreamScheduler`:

* a **text position** is its item's text vector (the token, or ``tts_eos`` for ``TEXT_END``)
  plus ``codec_pad``;
* the **speech position** of frame ``f`` is ``tts_pad`` plus frame ``f`` (the sum of its K code
  embeddings). Frame ``f`` is sampled from the hidden state of the position just before it,
  codebook 0 by the talker and the rest by the code predictor (the dual loop's sampling), and
  then fed as this position.

The prompt is the prefix and the text lead-in (the text positions before frame 0). After each
frame, its speech position and the text positions due before the next frame are fed together
(one forward). ``WAIT`` (the due text item has not arrived) reads the caller's next piece, so
text in pieces gives exactly the positions of the whole text, and the same speech for a seed.
End-of-speech may be chosen only once ``TEXT_END`` has entered; the duration guard of
:mod:`~omnispeech.pipelines.tts_loop` ends an utterance that never ends, and each segment of
the text is one utterance, as with the dual track.

**In-context cloning** (a voice with the reference clip's codes and transcript): between the
control prefix and the target's lead-in comes the reference's own single stream, as training
arranges it (``data.in_context``, see :mod:`omnispeech.training.tts_batch`): its transcript and
``TEXT_END`` spread evenly over its frames at speed 1
(:func:`~omnispeech.interleave.build_reference_stream`, the function training uses), text
positions as above and reference frame ``f`` as ``tts_pad`` + its code embeddings. The reference
is given, so nothing is sampled there; its speaker vector fills the speaker slot, and its audio
is cut from the output as with the dual track. A transcript too long for its clip under the
policy's bounds has no such stream: that is an :class:`~omnispeech.errors.InputError`.
Without a transcript, a clip's speaker vector alone fills the speaker slot.

**Guidance** (``generation.guidance`` above 1, for talkers trained with
``data.guidance_dropout``): the talker runs each utterance twice in one batch, the second copy
unconditioned as training arranged it (every text token's position reads ``tts_pad`` instead of
the token, the speaker slot holds zeros; ``TEXT_END``, the language tag and an in-context
reference stay), at exactly the same positions. Codebook 0 is drawn from the guided logits (see
:meth:`~omnispeech.talker.Talker.sample_frame`) and both copies read the same frame.

A folder declares the single stream in ``config.json``: ``talker_arrangement`` holds ``kind``
"single" and the :class:`~omnispeech.interleave.SingleStreamPolicy` fields (look-ahead,
frames-per-token target and bounds); absent means the released dual track. The single stream
runs on the reference (eager) step, whose inputs can be any vectors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import torch

from omnispeech.errors import CheckpointError, ConfigError, InputError
from omnispeech.interleave import (
    ItemKind,
    SingleStreamPolicy,
    SingleStreamScheduler,
    TextItem,
    build_reference_stream,
)
from omnispeech.pipelines.tts_loop import Stepper, SynthesisRequest, Utterance
from omnispeech.pipelines.tts_prompt import TextTrack, control_prefix, reference_frames

ARRANGEMENT_KEY = "talker_arrangement"  # the config.json key of a single-stream folder
GUIDANCE_KEY = "guidance_dropout"  # in it: the share of unconditioned training sequences


def read_arrangement(config: dict[str, Any]) -> SingleStreamPolicy | None:
    """The single-stream policy a folder's ``config.json`` declares, or None (dual track).

    Raises:
        CheckpointError: an unknown arrangement kind or unusable policy fields.
    """
    entry = config.get(ARRANGEMENT_KEY)
    if entry is None:
        return None
    if not isinstance(entry, dict) or entry.get("kind") not in ("dual", "single"):
        raise CheckpointError(
            f"config.json: {ARRANGEMENT_KEY} must be an object with kind 'dual' or 'single', "
            f"got {entry!r}"
        )
    if entry["kind"] == "dual":
        return None
    fields = {k: v for k, v in entry.items() if k not in ("kind", GUIDANCE_KEY)}
    try:
        return SingleStreamPolicy.from_dict(fields)
    except (ConfigError, ValueError, TypeError) as exc:
        raise CheckpointError(f"config.json: unusable {ARRANGEMENT_KEY} ({exc})") from None


def read_guidance_dropout(config: dict[str, Any]) -> float:
    """The share of unconditioned sequences a single-stream talker learnt (its training's
    ``data.guidance_dropout``, recorded in ``talker_arrangement``); 0 when none.

    Raises:
        CheckpointError: a value that is not a number in [0, 1).
    """
    entry = config.get(ARRANGEMENT_KEY)
    value = entry.get(GUIDANCE_KEY, 0.0) if isinstance(entry, dict) else 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise CheckpointError(f"config.json: {ARRANGEMENT_KEY}.{GUIDANCE_KEY} must lie in [0, 1)")
    return float(value)


def arrangement_entry(policy: SingleStreamPolicy, guidance_dropout: float = 0.0) -> dict[str, Any]:
    """What :func:`read_arrangement` reads back as ``policy`` (and
    :func:`read_guidance_dropout` as ``guidance_dropout``, recorded when above 0)."""
    entry: dict[str, Any] = {"kind": "single", **policy.to_dict()}
    if guidance_dropout > 0:
        entry[GUIDANCE_KEY] = guidance_dropout
    return entry


class SingleUtterance(Utterance):
    """One utterance of a single-stream request: its prompt (prefix and text lead-in), then
    the positions fed after each frame.

    It keeps the dual :class:`~omnispeech.pipelines.tts_loop.Utterance`'s bookkeeping (text
    read as needed, the duration guard :meth:`cut`, :meth:`finish`) with a
    :class:`~omnispeech.interleave.SingleStreamScheduler` as its scheduler.

    Raises:
        InputError: an in-context voice whose transcript does not fit in its frames, or
            unusable reference codes.
    """

    def __init__(self, request: SynthesisRequest, track: TextTrack, first: list[int]) -> None:
        if request.single is None:
            raise ValueError("a single-stream utterance needs the request's single policy")
        self.request, self.track = request, track
        talker = request.talker
        self.codec_pad = track.codec([talker.spec.tokens.codec_pad])[0]
        self.guided = request.generation.guidance != 1.0
        voice = request.voice
        role, language, instruct = request.role_ids, request.language, request.instruct_ids
        prefixes = [control_prefix(track, role, language, voice, instruct)]
        if self.guided:
            blank = voice.speaker if voice.speaker is None else torch.zeros_like(voice.speaker)
            unvoiced = dataclasses.replace(voice, speaker=blank)
            prefixes.append(control_prefix(track, role, language, unvoiced, instruct))
        if voice.in_context:
            reference = self._reference(request.single)
            prefixes = [torch.cat((p, reference)) for p in prefixes]
        self.sched = SingleStreamScheduler(request.single)  # type: ignore[assignment]
        self.sched.push(first)
        self.tokens = list(first)
        self.end_in_prompt = False
        # The lead-in holds at least the first text item: item 0 always enters before frame 0.
        run = self._text_run()
        self.prompt = torch.stack(
            [torch.cat((p, self._vectors(run, copy))) for copy, p in enumerate(prefixes)]
        )  # [1 or 2, L, hidden]
        max_tokens = request.feed.max_tokens
        # Prompt, the frames the guard allows, and every text item of the segment.
        need = self.prompt.shape[1] + request.guard(max_tokens) + max_tokens + 2
        self.capacity = min(talker.spec.talker.max_positions, need)
        self.made = 0

    def _reference(self, policy: SingleStreamPolicy) -> torch.Tensor:
        """The in-context reference's stream (see the module docstring) -> ``[P, hidden]``."""
        voice, track = self.request.voice, self.track
        frames = reference_frames(track, voice)  # [R, hidden]; checks the voice
        assert voice.ref_text_ids is not None
        n, R = len(voice.ref_text_ids), frames.shape[0]
        try:
            stream = build_reference_stream(voice.ref_text_ids, R, policy)
        except ValueError:
            raise InputError(
                f"the reference transcript has {n} text tokens, too many for its {R} frames "
                f"({R / self.request.frame_rate:.1f} s) at this model's fastest rate of "
                f"{policy.min_frames_per_token:g} frames per token; give a longer clip, or "
                "only the transcript of what the clip says"
            ) from None
        vectors = []
        for pos in stream.positions:
            if pos.frame is not None:
                vectors.append(frames[pos.frame] + track.pad)
            else:
                assert pos.text is not None
                vectors.append(track.item(pos.text) + self.codec_pad)
        return torch.stack(vectors)

    def _text_run(self) -> list[TextItem]:
        """The items of the text positions before the next frame (maybe none), reading text
        while the scheduler waits for it; takes that frame's speech position."""
        run = []
        while True:
            pos = self.sched.next()
            if pos.is_wait:
                self._more()
            elif pos.is_speech:
                return run
            else:
                run.append(pos.text)

    def _vectors(self, items: list[TextItem], unconditioned: int) -> torch.Tensor:
        """Text positions of ``items`` -> ``[n, hidden]``; tokens read ``tts_pad`` in the
        unconditioned copy (``unconditioned`` 1)."""
        track = self.track
        out = [
            (track.pad if unconditioned and item.kind is ItemKind.TOKEN else track.item(item))
            + self.codec_pad
            for item in items
        ]
        return torch.stack(out) if out else self.codec_pad.new_zeros(0, self.codec_pad.shape[0])

    def next_inputs(self, codes: torch.Tensor) -> torch.Tensor:
        """Counts the frame just made (``codes`` ``[1, K]``); the vectors to feed after it
        ``[copies, n, hidden]`` (copies: 2 when guided, else 1): its speech position, then the
        text positions due before the next frame."""
        self.made += 1
        frame = self.request.talker.embed_frames(codes[:, :, None])[0, :1] + self.track.pad
        run = self._text_run()
        copies = 2 if self.guided else 1
        return torch.stack([torch.cat((frame, self._vectors(run, c))) for c in range(copies)])

    def next_text(self) -> torch.Tensor:
        raise NotImplementedError("single-stream utterances feed whole positions: next_inputs")


@torch.inference_mode()
def single_utterance(
    request: SynthesisRequest, track: TextTrack, first: list[int], cache_holder: list
) -> Iterator[torch.Tensor]:
    """Frames ``[K]`` of one utterance of a single-stream request (see the module docstring);
    ``cache_holder[0]`` carries the talker's cache from one utterance to the next."""
    utt = SingleUtterance(request, track, first)
    state = request.talker.start(utt.prompt, utt.capacity, cache_holder[0])
    cache_holder[0] = state.cache
    stepper = Stepper(request, state)
    while not utt.cut(state.cache.length):
        codes = stepper.sample(allow_end=utt.sched.done)
        if codes is None:
            break
        yield codes[0]
        inputs = utt.next_inputs(codes[:1])
        if state.cache.length + inputs.shape[1] > utt.capacity:
            utt.cut(utt.capacity)  # the talker's positions are spent: warn and stop
            break
        stepper.feed(inputs)
    utt.finish()
