"""Decode-time scheduling: which text item enters at each position while text arrives.

The rule (``L`` = ``policy.lookahead``, ``n`` = number of text tokens, item ``n`` = ``TEXT_END``):

1. **Lead-in.** Items ``0..L-1`` (or all ``n + 1`` items if fewer) enter at lead-in positions,
   before the first speech frame: the talker consumes them with ``codec_pad`` and produces no
   speech.
2. **Speech.** Token ``k``'s speech nominally starts at frame ``F_k = floor(T_k + 1/2)`` with
   ``T_0 = 0`` and ``T_{k+1} = T_k + d_k``, where ``d_k`` is token ``k``'s duration from
   :meth:`RatePolicy.token_frames` (the policy's target, or a per-token estimate: this is the
   adaptive part). Item ``L + k`` enters at the position that produces frame ``F_k``; every
   other speech position carries ``PAD``. After ``TEXT_END``, ``PAD`` forever.

Every decision depends only on the tokens already entered (their ids set the durations) and on
whether the one due item exists. So pushing the text in pieces gives the same stream as pushing
it at once: :meth:`Scheduler.next` returns ``WAIT`` exactly when the due item is a token that
has not arrived, or would be ``TEXT_END`` but the text is not closed.

Invariants (``lo``, ``hi`` as in :class:`RatePolicy`; tested in ``tests/test_interleave.py``):

* every token enters exactly once, in order, then ``TEXT_END`` once;
* rate, per gap: consecutive items entering at speech frames are between ``policy.min_gap``
  (``floor(lo)``) and ``policy.max_gap`` (``ceil(hi)``) frames apart, and the first one enters
  at frame 0; so while text remains, no run of ``PAD`` speech positions is longer than
  ``max_gap - 1``;
* rate, per prefix: when ``k`` tokens have started, ``k * lo - 1/2 < F_k <= k * hi + 1/2``
  (``F_k`` is exact to half a frame, so rounding never accumulates);
* look-ahead: when frame ``f`` is produced, exactly ``min(n + 1, started(f) + L)`` items have
  entered, where ``started(f)`` counts the ``k`` in ``0..n`` with ``F_k <= f`` (the end of the
  text counts as token ``n``: with ``L = 0``, ``TEXT_END`` enters when the last token's
  duration has elapsed). The text is thus always exactly ``L`` items ahead of the speech
  that realises it, until no text remains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from fractions import Fraction

from omnispeech.interleave.policy import (
    PAD,
    TEXT_END,
    WAIT_POSITION,
    Position,
    RatePolicy,
    TextItem,
    round_half_up,
)


@dataclasses.dataclass(frozen=True)
class SchedulerState:
    """A complete, immutable copy of a :class:`Scheduler`'s state (for :meth:`restore`).

    Attributes:
        policy: the policy in force (``speed`` may have been changed by ``set_speed``).
        tokens: every token id pushed so far.
        closed: whether the text is complete.
        entered: text items entered so far (tokens, plus 1 once ``TEXT_END`` has entered).
        frames: speech positions scheduled so far (the next speech position produces this frame).
        clock: ``T_k``: nominal start, in frames, of the token whose item is due next.
        next_entry: ``F_k = floor(T_k + 1/2)``: the frame at which the due item enters.
    """

    policy: RatePolicy
    tokens: tuple[int, ...]
    closed: bool
    entered: int
    frames: int
    clock: Fraction
    next_entry: int


class Scheduler:
    """Incremental text/speech interleaver for one utterance (see the module docstring).

    Call :meth:`push` as text arrives, :meth:`close` when it is complete, and :meth:`next` once
    per talker position: it says which text item the position consumes and which frame (if any)
    it produces.

    Args:
        policy: look-ahead, rate bounds and speed.
        frames_for_token: optional per-token duration estimate, token id -> frames per token
            before ``speed`` (e.g. from the token's character count). It is clamped to the
            policy's bounds; None uses ``policy.frames_per_token`` for every token.
    """

    def __init__(
        self, policy: RatePolicy, frames_for_token: Callable[[int], float] | None = None
    ) -> None:
        self._policy = policy
        self._estimate = frames_for_token
        self._tokens: list[int] = []
        self._closed = False
        self._entered = 0
        self._frames = 0
        self._clock = Fraction(0)
        self._next_entry = 0

    # -- text input ---------------------------------------------------------------------------

    def push(self, tokens: Sequence[int]) -> None:
        """Append text tokens (ids) as they arrive, e.g. from an LLM."""
        if self._closed:
            raise ValueError("push() after close(): the text was declared complete")
        self._tokens.extend(int(t) for t in tokens)

    def close(self) -> None:
        """Declare the text complete: ``TEXT_END`` may now enter, and ``WAIT`` never comes back."""
        self._closed = True

    # -- scheduling ---------------------------------------------------------------------------

    def next(self) -> Position:
        """The next position: the text item it consumes and the frame it produces.

        Returns:
            A lead-in position (``frame`` None, codec input ``codec_pad``), a speech position
            (``frame`` = index of the frame it produces), or ``WAIT_POSITION`` (``is_wait``): the
            due item has not arrived. After ``WAIT`` nothing has changed; push more text (or
            close) and call again. ``WAIT`` is never returned once the text is closed.
        """
        policy = self._policy
        if self.done:
            return self._speech(PAD)
        lead_in = self._entered < policy.lookahead
        if not lead_in and self._frames < self._next_entry:
            return self._speech(PAD)
        # Item `entered` is due at this position.
        item = self._due_item()
        if item is None:
            return WAIT_POSITION
        self._entered += 1
        if item.is_token and item.index >= policy.lookahead:
            # Item L + k enters at F_k, so token k starts now; the next item is due when its
            # duration has elapsed. Token k has entered (k <= L + k), so its id is known.
            k = item.index - policy.lookahead
            self._advance_clock(self._tokens[k])
        if lead_in:
            return Position(item, None)
        return self._speech(item)

    def _due_item(self) -> TextItem | None:
        """Item number ``entered`` if it exists yet, None if the caller must wait for text."""
        j = self._entered
        if j < len(self._tokens):
            return TextItem.of_token(j, self._tokens[j])
        return TEXT_END if self._closed else None

    def _advance_clock(self, token: int) -> None:
        estimate = None if self._estimate is None else float(self._estimate(token))
        self._clock += self._policy.token_frames(estimate)
        self._next_entry = round_half_up(self._clock)

    def _speech(self, item: TextItem) -> Position:
        frame = self._frames
        self._frames += 1
        return Position(item, frame)

    # -- state --------------------------------------------------------------------------------

    @property
    def policy(self) -> RatePolicy:
        return self._policy

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def done(self) -> bool:
        """True once ``TEXT_END`` has entered: only ``PAD`` follows."""
        return self._closed and self._entered > len(self._tokens)

    @property
    def entered(self) -> int:
        """Text items entered so far (tokens, plus 1 once ``TEXT_END`` has entered)."""
        return self._entered

    @property
    def pending(self) -> int:
        """Tokens pushed but not entered yet (the text buffered ahead of the talker)."""
        return len(self._tokens) - min(self._entered, len(self._tokens))

    @property
    def frames(self) -> int:
        """Speech positions scheduled so far; the next speech position produces this frame."""
        return self._frames

    def set_speed(self, speed: float) -> None:
        """Change the speed control mid-utterance.

        It takes effect from the next token that starts: the duration of the token being spoken
        was fixed when it started, which keeps chunked text equal to whole text. The rate
        invariants of the module docstring then hold piecewise, each gap under its own speed.
        """
        self._policy = self._policy.replace(speed=speed)

    def snapshot(self) -> SchedulerState:
        """An immutable copy of the whole state (O(text length)); see :meth:`restore`."""
        return SchedulerState(
            policy=self._policy,
            tokens=tuple(self._tokens),
            closed=self._closed,
            entered=self._entered,
            frames=self._frames,
            clock=self._clock,
            next_entry=self._next_entry,
        )

    def restore(self, state: SchedulerState) -> None:
        """Return to a snapshot, e.g. to replay the same frames with other sampling settings.

        Text pushed after the snapshot is forgotten too; push it again if it should stay.
        """
        self._policy = state.policy
        self._tokens = list(state.tokens)
        self._closed = state.closed
        self._entered = state.entered
        self._frames = state.frames
        self._clock = state.clock
        self._next_entry = state.next_entry

    def copy(self) -> Scheduler:
        """An independent scheduler in the same state, with the same estimate function."""
        twin = Scheduler(self._policy, self._estimate)
        twin.restore(self.snapshot())
        return twin
