"""Training sequences: where each text item enters, given the speech it belongs to.

Input: the utterance's text tokens (``n``), its codec frames (``N`` frames of 80 ms) and,
optionally, an alignment: for each token, the first frame that realises it (non-decreasing).
Output: the stream the talker is trained on, one :class:`Position` per talker position: a
lead-in (text items with ``codec_pad``, no speech), then one position per frame ``0..N-1``.
The position after frame ``N - 1`` (where the talker learns to emit ``codec_eos``) is left to the
caller; ``TEXT_END`` always enters before it, so it carries ``PAD``.

Rule. Item ``j`` (token ``j``, or ``TEXT_END`` for ``j = n``) has a deadline, the frame by which
the look-ahead needs it: ``a[j - L]`` (the first frame of token ``j - L``) for ``j >= L``; the
lead-in for ``j < L``. ``a[n]`` stands for the end of the text: the last frame ``N - 1`` with an
alignment. Every deadline is capped at ``N - 1``. Items then enter as late as their deadlines
allow (just in time, like the decode-time :class:`Scheduler`), subject to

* ``policy.min_gap``: two items entering at speech frames are at least that far apart. Where the
  alignment packs tokens closer than that, earlier items move earlier, into the lead-in if need
  be: the bound is never broken, the lead-in grows instead;
* ``policy.max_gap``: while text remains, a new item enters at least every ``max_gap`` frames
  (counting from frame -1, so the first speech entry is at frame ``max_gap - 1`` or earlier);
  items move earlier for it, which only adds look-ahead.

Without an alignment the tokens are spread evenly at ``d = policy.token_frames(N / n)`` frames
per token (``N / n`` clamped to the rate bounds and scaled by ``speed``): token ``k`` starts at
``floor(k * d + 1/2)`` and the end of the text at ``floor(n * d + 1/2)``, both capped at frame
``N - 1``. Where nothing is capped this is exactly the decode-time scheduler's stream at target
rate ``N / n``, cut to ``N`` frames; the cap moves the last items earlier (``TEXT_END`` to frame
``N - 1`` at the latest), so the model is always trained to stop after the text has ended.

Invariants (tested): every token exactly once and in order, then ``TEXT_END`` once; the rate
bounds above; look-ahead: when frame ``f`` is produced, at least ``min(n + 1, started(f) + L)``
items have entered, ``started(f)`` being the number of tokens with ``a[k] <= f``.
"""

from __future__ import annotations

from collections.abc import Sequence

from omnispeech.interleave.policy import (
    PAD,
    TEXT_END,
    Position,
    RatePolicy,
    TextItem,
    round_half_up,
)


def build_training_stream(
    tokens: Sequence[int],
    n_frames: int,
    policy: RatePolicy,
    alignment: Sequence[int] | None = None,
) -> list[Position]:
    """The interleaved training stream of one utterance (see the module docstring).

    Args:
        tokens: the utterance's text token ids (``n`` text tokens, may be empty).
        n_frames: number of speech frames ``N`` (80 ms each), >= 1.
        policy: look-ahead and rate bounds (``frames_per_token`` is not used: the data sets the
            rate).
        alignment: optional, one entry per token: the first frame that realises it, in
            ``[0, N)``, non-decreasing. Tokens realised by no frame of their own (punctuation)
            take the frame of the next one.

    Returns:
        ``lead + N`` positions: ``lead`` lead-in positions (``frame`` None) then one position per
        frame ``0..N-1`` (``frame`` = the frame it produces), ``lead >= min(L, n + 1)``.

    Raises:
        ValueError: ``n_frames < 1``, or an alignment of the wrong length, out of range or
            decreasing.
    """
    n = len(tokens)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1 speech frame, got {n_frames}")
    if alignment is None:
        starts = _even_starts(n, n_frames, policy)
    else:
        starts = check_alignment(alignment, n, n_frames)
        starts.append(n_frames - 1)  # the end of the text: as late as the frames allow
    entries = _entry_frames(starts, n, n_frames, policy)

    items = [TextItem.of_token(i, int(t)) for i, t in enumerate(tokens)] + [TEXT_END]
    lead = sum(1 for e in entries if e < 0)
    stream = [Position(items[j], None) for j in range(lead)]
    at_frame = {e: j for j, e in enumerate(entries) if e >= 0}
    for f in range(n_frames):
        j = at_frame.get(f)
        stream.append(Position(PAD if j is None else items[j], f))
    return stream


def check_alignment(alignment: Sequence[int], n: int, n_frames: int) -> list[int]:
    """The alignment as a list, after checking length, range and order."""
    starts = [int(a) for a in alignment]
    if len(starts) != n:
        raise ValueError(f"alignment has {len(starts)} entries for {n} text tokens")
    for i, a in enumerate(starts):
        if not 0 <= a < n_frames:
            raise ValueError(f"alignment[{i}] = {a} is outside the speech frames [0, {n_frames})")
        if i and a < starts[i - 1]:
            raise ValueError(
                f"alignment decreases at token {i}: {starts[i - 1]} -> {a} (it must give "
                "each token's first frame, in text order)"
            )
    return starts


def _even_starts(n: int, n_frames: int, policy: RatePolicy) -> list[int]:
    """Nominal starts of tokens ``0..n-1`` and of the text end, evenly within the bounds."""
    if n == 0:
        return [0]
    d = policy.token_frames(n_frames / n)
    return [min(n_frames - 1, round_half_up(k * d)) for k in range(n + 1)]


def _entry_frames(starts: list[int], n: int, n_frames: int, policy: RatePolicy) -> list[int]:
    """Entry frame of each item ``0..n``; negative numbers mark lead-in entries.

    ``starts[k]`` is the first frame of token ``k`` (``starts[n]``: the end of the text).
    """
    lookahead, min_gap, max_gap = policy.lookahead, policy.min_gap, policy.max_gap
    # Deadlines: item j is needed from the first frame of token j - L (lead-in for j < L).
    deadline = [
        -1 if j < lookahead else min(n_frames - 1, starts[j - lookahead]) for j in range(n + 1)
    ]
    # Backward pass: as late as the deadlines allow with entries min_gap apart. Going below 0
    # means the lead-in, where positions produce no frames and the rate bounds do not apply.
    latest = deadline[:]
    for j in range(n - 1, -1, -1):
        latest[j] = min(deadline[j], latest[j + 1] - min_gap)
    # Forward pass: no more than max_gap frames between entries while text remains. Moving an
    # item earlier keeps every deadline and only widens the next gap, which the next step caps;
    # gaps stay >= min_gap because max_gap >= min_gap.
    entries: list[int] = []
    previous = -1  # the lead-in ends just before frame 0
    for j in range(n + 1):
        if latest[j] < 0:
            entries.append(latest[j])
            continue
        entry = min(latest[j], previous + max_gap)
        entries.append(entry)
        previous = entry
    return entries
