"""Single-stream training sequences: each text item just before the speech that needs it.

Input: the utterance's text tokens (``n``), its speech frames (``N`` frames of 80 ms) and,
optionally, an alignment ``a``: for each token the first frame that realises it (non-decreasing,
in ``[0, N)``). Output: a :class:`SingleStream`, built by the rule of
:mod:`~omnispeech.interleave.single_stream` (item ``L + k`` right before frame ``F_k``) with
durations ``d_k`` in ``[lo, hi]`` taken from the data, so every invariant of that module holds.

**Durations without an alignment**: evenly spread, every token ``d = policy.token_frames(N / n)``
(``N / n`` clamped to the bounds, then divided by ``speed``). The stream is then exactly the
decode-time :class:`~omnispeech.interleave.single_stream.SingleStreamScheduler`'s stream (text
pushed at once and closed, ``frames_per_token = clamp(N / n)``), cut before frame ``N``.

**Durations with an alignment**: the nominal clock ``T`` tracks the alignment as closely as the
bounds allow, early rather than late. Targets: ``A_k = a[k]`` for ``k < n`` and ``A_n = N`` (the
text ends with the speech). A backward pass gives the latest start of each token from which all
later tokens can still meet their targets at the fastest rate: ``latest_n = A_n``,
``latest_k = min(A_k, latest_{k+1} - lo)``. A forward pass keeps every step within the bounds:
``T_0 = 0``, ``T_k = max(T_{k-1} + lo, min(latest_k, T_{k-1} + hi))``. Consequences (tested):

* an alignment inside the bounds (``a[0] = 0``, every gap ``a[k+1] - a[k]`` and ``N - a[n-1]``
  within ``[lo, hi]``) is reproduced exactly: ``F_k = a[k]``;
* never late when it can be avoided: if ``k * lo <= A_k`` for every ``k``, then
  ``F_k <= a[k]``: item ``L + k`` enters before the first frame of token ``k``, so the text is at
  least ``L`` items ahead of the real speech;
* an alignment denser than ``lo`` allows never breaks the bound: the burst's items move earlier
  (spread at ``lo`` frames per token over the frames before it), and where there is no room
  before (``k * lo > a[k]``) token ``k`` starts after its first real frame, only at the fastest
  rate (``F_k > a[k]`` implies ``d_{k-1} = lo``), catching up as soon as the alignment allows;
* pauses longer than ``hi`` per token: text keeps entering every ``hi`` frames, ahead of the
  real speech (the upper bound: speech never outruns its text).

The stream holds frames ``0..N-1`` and, after frame ``N - 1``, the items whose nominal start is
``N`` (with ``L = 0``, ``TEXT_END`` when the text ends with the speech). The caller appends the
end-of-speech target after it. An item that would enter after frame ``N`` does not fit: that
raises ``ValueError``; with an alignment exactly when ``floor((n - L) * lo + 1/2) > N``, i.e.
the text is too long for the frames even at the fastest rate.

**In-context references** (:func:`build_reference_stream`): the recording whose voice is cloned
enters as its own stream, evenly spread at speed 1: at inference a reference clip has no
alignment, and the speed setting is the target's, not the recording's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fractions import Fraction

from omnispeech.interleave.single_stream import (
    STREAM_TEXT_END,
    SingleStreamPolicy,
    StreamPosition,
    nominal_starts,
)
from omnispeech.interleave.training import check_alignment


@dataclasses.dataclass(frozen=True)
class SingleStream:
    """One utterance's training stream and the schedule behind it.

    Attributes:
        positions: text and speech positions in order: every token, ``TEXT_END`` and frames
            ``0..N-1`` exactly once each.
        durations: ``d_k``, frames given to token ``k`` (exact, in ``[lo, hi]``), ``n`` entries.
        starts: ``F_k``, nominal first frame of token ``k`` for ``k < n`` and the nominal end of
            the text for ``k = n`` (``n + 1`` entries); item ``L + k`` enters right before frame
            ``F_k``.
    """

    positions: tuple[StreamPosition, ...]
    durations: tuple[Fraction, ...]
    starts: tuple[int, ...]

    @property
    def lead_in(self) -> int:
        """Text items before frame 0 (>= ``min(L + 1, n + 1)``)."""
        return next((i for i, p in enumerate(self.positions) if p.is_speech), len(self.positions))


def build_single_stream(
    tokens: Sequence[int],
    n_frames: int,
    policy: SingleStreamPolicy,
    alignment: Sequence[int] | None = None,
) -> SingleStream:
    """The single-stream training sequence of one utterance (see the module docstring).

    Args:
        tokens: the utterance's text token ids (``n`` tokens, may be empty).
        n_frames: ``N``, speech frames of 80 ms, >= 1.
        policy: look-ahead, bounds and speed (``frames_per_token`` is not used: the data sets
            the rate).
        alignment: optional, one entry per token: its first frame, in ``[0, N)``,
            non-decreasing. Tokens with no frame of their own (punctuation) take the next one's.

    Returns:
        The stream, ``n + 1 + N`` positions, with its durations and nominal starts.

    Raises:
        ValueError: ``n_frames < 1``; an alignment of the wrong length, out of range or
            decreasing; or text that does not fit in ``N`` frames under the bounds.
    """
    n = len(tokens)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1 speech frame, got {n_frames}")
    if alignment is None:
        durations = [policy.token_frames(n_frames / n)] * n if n else []
    else:
        targets = [*check_alignment(alignment, n, n_frames), n_frames]
        durations = _track(targets, policy.lo, policy.hi)
    starts = nominal_starts(durations)
    lookahead = policy.lookahead
    if n >= lookahead and starts[n - lookahead] > n_frames:
        raise ValueError(
            f"{n} text tokens do not fit in {n_frames} frames: TEXT_END would enter before frame "
            f"{starts[n - lookahead]} (min_frames_per_token={policy.min_frames_per_token}, "
            f"speed={policy.speed}, lookahead={lookahead}); lower the bound or drop the sample"
        )
    items = [StreamPosition.of_token(i, int(t)) for i, t in enumerate(tokens)]
    items.append(STREAM_TEXT_END)
    positions: list[StreamPosition] = []
    j = 0
    for f in range(n_frames + 1):
        # Every item due by frame f (lead-in, or its token has started), then frame f itself.
        while j <= n and (j < lookahead or starts[j - lookahead] <= f):
            positions.append(items[j])
            j += 1
        if f < n_frames:
            positions.append(StreamPosition.of_frame(f))
    return SingleStream(tuple(positions), tuple(durations), tuple(starts))


def _track(targets: list[int], lo: Fraction, hi: Fraction) -> list[Fraction]:
    """Durations whose running sum follows ``targets`` (``n + 1`` start frames) within bounds.

    Every duration lies in ``[lo, hi]``; see the module docstring for the two passes and why
    the clock stays as close to the targets as the bounds allow, early rather than late.
    """
    n = len(targets) - 1
    latest: list[Fraction] = [Fraction(t) for t in targets]
    for k in range(n - 1, -1, -1):
        latest[k] = min(latest[k], latest[k + 1] - lo)
    clock, durations = Fraction(0), []
    for k in range(1, n + 1):
        # As late as the targets allow, but no step shorter than lo (text would burst) or longer
        # than hi (speech would outrun the text).
        step = max(lo, min(latest[k] - clock, hi))
        durations.append(step)
        clock += step
    return durations


def build_reference_stream(
    tokens: Sequence[int], n_frames: int, policy: SingleStreamPolicy
) -> SingleStream:
    """The single stream of an in-context reference: its transcript ``tokens`` over its
    ``n_frames`` frames (80 ms), durations evenly spread, ``policy``'s look-ahead and bounds at
    speed 1 (see the module docstring). Training and inference both build it here, so the two
    agree position for position.

    Raises:
        ValueError: the transcript does not fit in the frames under the bounds.
    """
    return build_single_stream(tokens, n_frames, policy.replace(speed=1.0))
