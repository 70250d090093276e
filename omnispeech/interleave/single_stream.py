"""ARIA as one interleaved stream: text items and speech frames at separate positions.

The released talkers sum a text-track item and a codec-track item at every position (the "dual
track" of :mod:`~omnispeech.interleave.scheduler`), so at most one text item enters per frame.
Here the talker reads *one* sequence in which every position is either text or speech:

* a **text position** carries one text item: token ``i`` (its index in the utterance's text,
  0-based, and its id) or :data:`STREAM_TEXT_END` (exactly once, right after the last token);
* a **speech position** is where the talker produces speech frame ``f`` (80 ms of codes,
  12.5 Hz): it samples frame ``f`` from everything before it and reads it as this position's
  input from then on;
* :data:`STREAM_WAIT` is no position: the decode-time scheduler's answer when the next position
  is text that has not arrived yet (the talker pauses instead of outrunning the text).

Because text items no longer need a frame each, several tokens can enter between two frames:
rates below one frame per token are possible.

**The rule.** ``L`` = look-ahead in text items, ``n`` = number of tokens, item ``n`` =
``TEXT_END``. Token ``k`` has a duration ``d_k`` in frames with ``lo <= d_k <= hi`` (see
:class:`SingleStreamPolicy`; at decode time from the target or a per-token estimate, in training
from the alignment). Its nominal start is ``F_k = floor(T_k + 1/2)`` with ``T_0 = 0`` and
``T_{k+1} = T_k + d_k``; ``F_n`` is the nominal end of the text. The stream is: for
``f = 0, 1, 2, ...``, first every item ``j`` not yet placed with ``j < L + started(f)``, then
speech frame ``f``; ``started(f)`` = number of ``k`` in ``0..n`` with ``F_k <= f``. So items
``0..L-1`` form a lead-in before frame 0, and item ``L + k`` enters right before frame ``F_k``
(all tokens that start at the same frame enter together). After ``TEXT_END``: speech only,
until the talker ends the speech itself.

**Invariants** (tested in ``tests/test_interleave_single.py``; ``t`` = text items and ``s`` =
speech frames in a prefix of the stream, ``k = t - L``):

1. order: tokens ``0..n-1`` once each, in order, then ``TEXT_END`` once; frames ``0, 1, ...``
   once each, in order;
2. look-ahead: at the position of frame ``f`` exactly ``min(n + 1, L + started(f))`` items have
   entered: the text is always exactly ``L`` items ahead of the (nominal) speech realising it;
3. rate, every prefix (adaptive): ``F_{k-1} <= s`` for ``k >= 1`` (the text never gets further
   ahead of the speech than the look-ahead), and ``s <= F_k`` while text remains (``t <= n``;
   ``s = 0`` while ``k < 0``: speech never outruns its text). Within the static envelope:
   ``(k - 1) * lo - 1/2 < s``, and ``s <= k * hi + 1/2`` while text remains: the ratio
   ``s / k`` stays in ``[lo, hi]`` up to ``lo + 1/2`` frames below and ``1/2`` frame above;
4. rate, every window: items ``L + k1`` and ``L + k2`` (``k1 < k2``, the starts of those
   tokens) enter ``F_{k2} - F_{k1}`` frames apart, strictly between ``(k2 - k1) * lo - 1`` and
   ``(k2 - k1) * hi + 1``: the text never comes in bursts.

The decision at each position depends only on the items already entered (their ids set the
durations) and on whether the one due item exists, so pushing the text in pieces gives exactly
the stream of pushing it at once, with ``WAIT`` exactly where the due item is missing. The
training builder (:func:`~omnispeech.interleave.single_training.build_single_stream`) applies
the same rule to durations taken from the data, so it has the same invariants.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Final

from omnispeech.config import FrozenConfig
from omnispeech.interleave.policy import (
    TEXT_END,
    WAIT,
    ItemKind,
    TextItem,
    check_rate_fields,
    round_half_up,
)


@dataclasses.dataclass(frozen=True, slots=True)
class StreamPosition:
    """One position of the single stream: text, speech, or the scheduler's wait.

    Exactly one of the two fields is set.

    Attributes:
        text: at a text position, the item it carries (a token or ``TEXT_END``; never ``PAD``,
            which the single stream does not need); ``WAIT`` for :data:`STREAM_WAIT`; None at a
            speech position.
        frame: at a speech position, the index of the frame the talker produces there (0-based,
            frames of 80 ms); None otherwise.
    """

    text: TextItem | None
    frame: int | None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.frame is None):
            raise ValueError("a stream position is text or speech: set exactly one field")
        if self.text is not None and self.text.kind is ItemKind.PAD:
            raise ValueError("PAD has no place in the single stream: speech positions need none")
        if self.frame is not None and self.frame < 0:
            raise ValueError(f"frame must be >= 0, got {self.frame}")

    @classmethod
    def of_token(cls, index: int, token: int) -> StreamPosition:
        """The text position of token ``index`` (0-based) with id ``token``."""
        return cls(TextItem.of_token(index, token), None)

    @classmethod
    def of_frame(cls, frame: int) -> StreamPosition:
        """The speech position that produces frame ``frame``."""
        return cls(None, frame)

    @property
    def is_text(self) -> bool:
        """True for a token or ``TEXT_END``."""
        return self.text is not None and self.text.kind is not ItemKind.WAIT

    @property
    def is_speech(self) -> bool:
        return self.frame is not None

    @property
    def is_wait(self) -> bool:
        return self.text is not None and self.text.kind is ItemKind.WAIT

    def __repr__(self) -> str:
        return f"Frame({self.frame})" if self.text is None else repr(self.text)


STREAM_TEXT_END: Final = StreamPosition(TEXT_END, None)
STREAM_WAIT: Final = StreamPosition(WAIT, None)


@dataclasses.dataclass(frozen=True)
class SingleStreamPolicy(FrozenConfig):
    """Look-ahead and speech-to-text rate of the single stream.

    The fields mean what they mean in :class:`~omnispeech.interleave.policy.RatePolicy`, but
    nothing is floored at one frame per token: text has positions of its own. Effective bounds
    ``lo = min_frames_per_token / speed`` and ``hi = max_frames_per_token / speed``.

    The defaults are starting values derived from speaking rates, not measured: read speech runs
    at 2.5-3 words/s and ~1.3 BPE tokens per word, i.e. 3.3-3.9 tokens/s or 3.2-3.8 frames of
    80 ms per token (3.5 taken); the bounds allow 7x faster (numbers, punctuation, multi-token
    words) and ~2x slower, and two items of look-ahead let the talker see the next word.

    Attributes:
        lookahead: text items fed ahead of the speech that realises them (>= 0);
            :data:`~omnispeech.interleave.policy.ALL_TEXT` puts the whole text before frame 0.
        frames_per_token: target frames per text token (before ``speed``), within the bounds.
        min_frames_per_token: lower rate bound: no token's duration is shorter (> 0).
        max_frames_per_token: upper rate bound: no token's duration is longer.
        speed: speech speed control: > 1 feeds text faster (fewer frames per token). It scales
            the target and both bounds.
    """

    lookahead: int = 2
    frames_per_token: float = 3.5
    min_frames_per_token: float = 0.5
    max_frames_per_token: float = 8.0
    speed: float = 1.0

    def __post_init__(self) -> None:
        check_rate_fields(self)

    @property
    def lo(self) -> Fraction:
        """Shortest token duration in frames, exact: ``min_frames_per_token / speed``."""
        return Fraction(self.min_frames_per_token) / Fraction(self.speed)

    @property
    def hi(self) -> Fraction:
        """Longest token duration in frames, exact: ``max_frames_per_token / speed``."""
        return Fraction(self.max_frames_per_token) / Fraction(self.speed)

    def token_frames(self, estimate: float | Fraction | None = None) -> Fraction:
        """Frames given to one token: ``clamp(estimate, min, max) / speed``, exact.

        Args:
            estimate: frames per token for this token before ``speed``; None uses
                ``frames_per_token``.

        Returns:
            The duration in frames as an exact fraction in ``[lo, hi]``, so that sums of many
            never drift (floats do, and the rate bounds are stated exactly).
        """
        if estimate is None:
            estimate = self.frames_per_token
        if not (isinstance(estimate, Fraction) or math.isfinite(estimate)) or estimate <= 0:
            raise ValueError(f"a frames-per-token estimate must be finite and > 0, got {estimate}")
        low, high = Fraction(self.min_frames_per_token), Fraction(self.max_frames_per_token)
        return min(max(Fraction(estimate), low), high) / Fraction(self.speed)


def nominal_starts(durations: Sequence[Fraction]) -> list[int]:
    """``F_k = floor(T_k + 1/2)`` for ``k = 0..n``, ``T_k`` = sum of the first ``k`` durations.

    Rounding the exact running sum (not each duration) keeps every ``F_k`` within half a frame
    of its nominal time, however long the text.
    """
    clock, starts = Fraction(0), [0]
    for d in durations:
        clock += d
        starts.append(round_half_up(clock))
    return starts


@dataclasses.dataclass(frozen=True)
class SingleStreamState:
    """A complete, immutable copy of a :class:`SingleStreamScheduler`'s state.

    Attributes:
        policy: the policy in force (``speed`` may have been changed by ``set_speed``).
        tokens: every token id pushed so far.
        closed: whether the text is complete.
        entered: text items placed so far (tokens, plus 1 once ``TEXT_END`` is placed).
        frames: speech positions placed so far (the next one produces this frame).
        clock: ``T_k``, in frames, of the token ``k = entered - L`` whose item is due next.
        next_start: ``F_k = floor(T_k + 1/2)``: the frame before which that item enters.
    """

    policy: SingleStreamPolicy
    tokens: tuple[int, ...]
    closed: bool
    entered: int
    frames: int
    clock: Fraction
    next_start: int


class SingleStreamScheduler:
    """Decode-time single-stream interleaver for one utterance (see the module docstring).

    Call :meth:`push` as text arrives (e.g. from an LLM), :meth:`close` when it is complete, and
    :meth:`next` once per talker position.

    Args:
        policy: look-ahead, rate bounds and speed.
        frames_for_token: optional per-token duration estimate, token id -> frames before
            ``speed`` (e.g. from the token's characters); clamped to the policy's bounds. None
            gives every token ``policy.frames_per_token``.
    """

    def __init__(
        self,
        policy: SingleStreamPolicy,
        frames_for_token: Callable[[int], float | Fraction] | None = None,
    ) -> None:
        self._estimate = frames_for_token
        # The initial state goes through restore(), so there is one place that sets the state.
        self.restore(
            SingleStreamState(
                policy, (), False, entered=0, frames=0, clock=Fraction(0), next_start=0
            )
        )

    # -- text input ---------------------------------------------------------------------------

    def push(self, tokens: Sequence[int]) -> None:
        """Append text token ids as they arrive."""
        if self._closed:
            raise ValueError("push() after close(): the text was declared complete")
        self._tokens.extend(int(t) for t in tokens)

    def close(self) -> None:
        """Declare the text complete: ``TEXT_END`` may enter, and ``WAIT`` never comes back."""
        self._closed = True

    # -- scheduling ---------------------------------------------------------------------------

    def next(self) -> StreamPosition:
        """The next position of the stream.

        Returns:
            A text position (a token or ``TEXT_END``), a speech position (``frame`` = the frame
            the talker produces there), or :data:`STREAM_WAIT` when the due item has not
            arrived: nothing changed; push more text (or close) and call again. Never ``WAIT``
            once the text is closed.
        """
        lookahead = self._policy.lookahead
        j = self._entered
        # Item j is due before the next frame if it belongs to the lead-in or its token k = j - L
        # starts at this frame; once TEXT_END is placed only speech follows.
        if not self.done and (j < lookahead or self._next_start <= self._frames):
            item = self._item(j)
            if item is None:
                return STREAM_WAIT
            self._entered += 1
            if item.is_token and j >= lookahead:
                # Token k = j - L starts now; token L + k + 1 is due when k's duration has
                # elapsed. Token k has entered (k <= j), so its id is known: the schedule never
                # depends on text that has not arrived.
                self._advance(self._tokens[j - lookahead])
            return StreamPosition(item, None)
        frame = self._frames
        self._frames += 1
        return StreamPosition(None, frame)

    def _item(self, j: int) -> TextItem | None:
        """Item ``j`` if it has arrived, None if the caller must wait for text."""
        if j < len(self._tokens):
            return TextItem.of_token(j, self._tokens[j])
        return TEXT_END if self._closed else None

    def _advance(self, token: int) -> None:
        estimate = None if self._estimate is None else self._estimate(token)
        self._clock += self._policy.token_frames(estimate)
        self._next_start = round_half_up(self._clock)

    # -- state --------------------------------------------------------------------------------

    @property
    def policy(self) -> SingleStreamPolicy:
        return self._policy

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def done(self) -> bool:
        """True once ``TEXT_END`` is placed: only speech positions follow."""
        return self._closed and self._entered > len(self._tokens)

    @property
    def entered(self) -> int:
        """Text items placed so far (tokens, plus 1 once ``TEXT_END`` is placed)."""
        return self._entered

    @property
    def frames(self) -> int:
        """Speech positions placed so far; the next one produces this frame."""
        return self._frames

    @property
    def pending(self) -> int:
        """Tokens pushed but not placed yet (text buffered ahead of the talker)."""
        return len(self._tokens) - min(self._entered, len(self._tokens))

    def set_speed(self, speed: float) -> None:
        """Change the speed control mid-utterance, from the next token that starts on.

        The duration of the token being spoken was fixed when it started, which keeps pieces
        equal to whole text; the invariants then hold piecewise, each token under its own speed.
        """
        self._policy = self._policy.replace(speed=speed)

    def snapshot(self) -> SingleStreamState:
        """An immutable copy of the whole state (O(text length)); see :meth:`restore`."""
        return SingleStreamState(
            policy=self._policy,
            tokens=tuple(self._tokens),
            closed=self._closed,
            entered=self._entered,
            frames=self._frames,
            clock=self._clock,
            next_start=self._next_start,
        )

    def restore(self, state: SingleStreamState) -> None:
        """Return to a snapshot, e.g. to replay frames with other sampling settings.

        Text pushed after the snapshot is forgotten too; push it again if it should stay.
        """
        self._policy = state.policy
        self._tokens = list(state.tokens)
        self._closed = state.closed
        self._entered = state.entered
        self._frames = state.frames
        self._clock = state.clock
        self._next_start = state.next_start

    def copy(self) -> SingleStreamScheduler:
        """An independent scheduler in the same state, with the same estimate function."""
        twin = SingleStreamScheduler(self._policy, self._estimate)
        twin.restore(self.snapshot())
        return twin
