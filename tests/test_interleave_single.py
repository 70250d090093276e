"""ARIA single stream: property tests of the invariants, decode time and training.

``n`` tokens, item ``n`` = TEXT_END, ``L`` = look-ahead, ``t`` / ``s`` = text items / speech
frames in a prefix, ``k = t - L``, ``lo`` / ``hi`` = effective bounds. Checked:

1. order: every token once, in order, then TEXT_END once; frames 0, 1, ... once, in order;
2. look-ahead: at frame ``f``, exactly ``min(n + 1, L + started(f))`` items have entered, with
   ``started`` from nominal starts computed here independently of the module;
3. prefix rate: ``(k - 1) * lo - 1/2 < s`` always; ``s <= max(0, k * hi + 1/2)`` while text
   remains; ``s = 0`` while ``k < 0``;
4. window rate: tokens ``k1 < k2`` enter strictly between ``(k2 - k1) * lo - 1`` and
   ``(k2 - k1) * hi + 1`` frames apart;
5. pieces == at once, WAIT exactly when the due item is missing, snapshot/restore;
6. training: the same invariants; without an alignment it is the decode-time stream at rate
   ``N / n``; with one it is the decode-time stream under its durations; alignments inside the
   bounds are reproduced, dense ones never break the bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnispeech.interleave import (
    ALL_TEXT,
    PAD,
    STREAM_TEXT_END,
    STREAM_WAIT,
    TEXT_END,
    SingleStreamPolicy,
    SingleStreamScheduler,
    StreamPosition,
    TextItem,
    build_single_stream,
)

PROPERTY = settings(max_examples=60, deadline=None)
HALF = Fraction(1, 2)

# Round values hit the exact half-frame ties of the rounding rule; floats cover the rest.
rates = st.one_of(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 3.0]), st.floats(0.2, 3.0))


@st.composite
def policies(draw: st.DrawFn) -> SingleStreamPolicy:
    lo = draw(rates)
    hi = draw(st.one_of(st.just(lo), st.floats(lo, 6.0), st.sampled_from([lo * 2, lo + 1])))
    return SingleStreamPolicy(
        lookahead=draw(st.one_of(st.integers(0, 3), st.just(ALL_TEXT))),
        frames_per_token=draw(st.floats(lo, hi)),
        min_frames_per_token=lo,
        max_frames_per_token=hi,
        speed=draw(st.sampled_from([1.0, 0.5, 0.8, 1.25, 2.0])),
    )


def _estimate(token: int) -> float:
    """Per-token durations that often fall outside the bounds (so they get clamped)."""
    return 0.1 + (token % 9) * 0.6


token_lists = st.lists(st.integers(0, 60), max_size=20)
estimates = st.sampled_from([None, _estimate])


def _bounds(policy: SingleStreamPolicy) -> tuple[Fraction, Fraction]:
    speed = Fraction(policy.speed)
    return Fraction(policy.min_frames_per_token) / speed, Fraction(
        policy.max_frames_per_token
    ) / speed


def _spec_starts(policy: SingleStreamPolicy, tokens: Sequence[int], est: Callable | None) -> list:
    """The module docstring's F_k, computed here from scratch: floor(T_k + 1/2)."""
    lo, hi = _bounds(policy)
    clock, starts = Fraction(0), [0]
    for t in tokens:
        target = Fraction(policy.frames_per_token if est is None else est(t)) / Fraction(
            policy.speed
        )
        clock += min(max(target, lo), hi)
        starts.append(math.floor(clock + HALF))
    return starts


def _decode(policy: SingleStreamPolicy, tokens: Sequence[int], est: Callable | None) -> list:
    """The whole-text stream up to TEXT_END and three frames after it."""
    sched = SingleStreamScheduler(policy, est)
    sched.push(tokens)
    sched.close()
    stream: list[StreamPosition] = []
    for _ in range(len(tokens) + 1 + math.ceil(len(tokens) * _bounds(policy)[1]) + 8):
        stream.append(sched.next())
        if sched.done and sum(p.is_speech for p in stream[stream.index(STREAM_TEXT_END) :]) == 3:
            return stream
    raise AssertionError("TEXT_END never came")


def _item_number(p: StreamPosition, n: int) -> int:
    assert p.text is not None
    return p.text.index if p.text.is_token else n


# -- the checkers (each raises AssertionError on a broken stream) ---------------------------------


def _check_order(stream: Sequence[StreamPosition], tokens: Sequence[int]) -> None:
    assert not any(p.is_wait for p in stream)
    text = [p.text for p in stream if p.is_text]
    assert text == [TextItem.of_token(i, t) for i, t in enumerate(tokens)] + [TEXT_END]
    assert [p.frame for p in stream if p.is_speech] == list(range(sum(p.is_speech for p in stream)))


def _check_lookahead(stream: Sequence[StreamPosition], n: int, lookahead: int, starts) -> None:
    entered = 0
    for p in stream:
        if p.is_text:
            entered += 1
        else:
            started = sum(1 for s in starts if s <= p.frame)
            assert entered == min(n + 1, lookahead + started), (p.frame, entered, started)


def _check_prefix_rates(stream, n: int, lookahead: int, lo: Fraction, hi: Fraction) -> None:
    t = s = 0
    for p in [None, *stream]:  # None: the empty prefix
        if p is not None:
            t, s = t + p.is_text, s + p.is_speech
        k = t - lookahead
        assert (k - 1) * lo - HALF < s, ("text ahead of speech", t, s)
        if t <= n:  # text remains
            assert s <= max(0, k * hi + HALF), ("speech ahead of text", t, s)
            assert k >= 0 or s == 0, ("speech inside the lead-in", t, s)


def _check_windows(stream, n: int, lookahead: int, lo: Fraction, hi: Fraction) -> None:
    """Entry frame of item L + k (frames before it) is F_k; every pair of them is in band."""
    entries, s = [], 0
    for p in stream:
        s += p.is_speech
        if p.is_text and _item_number(p, n) >= lookahead:
            entries.append(s)
    assert entries[:1] in ([], [0])  # token 0 starts at frame 0
    for k1, e1 in enumerate(entries):
        for k2 in range(k1 + 1, len(entries)):
            assert (k2 - k1) * lo - 1 < entries[k2] - e1 < (k2 - k1) * hi + 1, (k1, k2)


def _check_all(stream, tokens, policy, starts) -> None:
    n, lookahead = len(tokens), policy.lookahead
    lo, hi = _bounds(policy)
    _check_order(stream, tokens)
    _check_lookahead(stream, n, lookahead, starts)
    _check_prefix_rates(stream, n, lookahead, lo, hi)
    _check_windows(stream, n, lookahead, lo, hi)


# -- decode time ----------------------------------------------------------------------------------


@PROPERTY
@given(policies(), token_lists, estimates)
def test_decode_invariants(policy, tokens, est):
    stream = _decode(policy, tokens, est)
    _check_all(stream, tokens, policy, _spec_starts(policy, tokens, est))
    # After TEXT_END only speech, and the stream never waits once closed.
    assert all(p.is_speech for p in stream[stream.index(STREAM_TEXT_END) + 1 :])


def test_rates_below_one_frame_per_token():
    policy = SingleStreamPolicy(
        lookahead=0, frames_per_token=0.5, min_frames_per_token=0.25, max_frames_per_token=1.0
    )
    sched = SingleStreamScheduler(policy)
    sched.push([11, 12, 13, 14, 15, 16])
    sched.close()
    tok, fr = StreamPosition.of_token, StreamPosition.of_frame
    # F = 0, 1, 1, 2, 2, 3 for the tokens (T_k = k / 2, ties round up) and 3 for the text end.
    assert [sched.next() for _ in range(12)] == [
        tok(0, 11), fr(0), tok(1, 12), tok(2, 13), fr(1), tok(3, 14), tok(4, 15), fr(2),
        tok(5, 16), STREAM_TEXT_END, fr(3), fr(4),
    ]  # fmt: skip


def test_adaptive_durations_follow_the_estimate():
    # Token 7's estimate is 4 frames, token 1's is clamped from 0.1 up to 0.5: the next token
    # enters 4 frames after 7 starts, and one frame after two quick tokens.
    policy = SingleStreamPolicy(
        lookahead=0, frames_per_token=1.0, min_frames_per_token=0.5, max_frames_per_token=4.0
    )
    sched = SingleStreamScheduler(policy, {7: 4.0, 1: 0.1, 2: 1.0}.__getitem__)
    sched.push([7, 1, 1, 2])
    sched.close()
    got = [sched.next() for _ in range(12)]
    frames_before = [sum(q.is_speech for q in got[:i]) for i, p in enumerate(got) if p.is_text]
    assert frames_before == [0, 4, 5, 5, 6]  # T = 0, 4, 4.5, 5, 6: F = 0, 4, 5, 5, 6


@PROPERTY
@given(policies(), token_lists, estimates, st.data())
def test_pieces_equal_whole_and_wait_exactly_when_missing(policy, tokens, est, data):
    expected = _decode(policy, tokens, est)
    n = len(tokens)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=6)))
    chunks = [tokens[a:b] for a, b in pairwise([0, *cuts, n])]
    sched, got, pushed, waits = SingleStreamScheduler(policy, est), [], 0, 0
    while len(got) < len(expected):
        if chunks and data.draw(st.booleans()):
            chunk = chunks.pop(0)
            sched.push(chunk)
            pushed += len(chunk)
        due = expected[len(got)]
        missing = due.is_text and (_item_number(due, n) >= pushed and not sched.closed)
        step = sched.next()
        assert step.is_wait == missing, (len(got), due, pushed)
        if step.is_wait:
            waits += 1
            assert step == STREAM_WAIT
            if chunks:
                chunk = chunks.pop(0)
                sched.push(chunk)
                pushed += len(chunk)
            else:
                sched.close()
            continue
        got.append(step)
    assert got == expected
    assert waits <= len(cuts) + 2  # each WAIT was answered by new text or the close


def test_wait_before_any_text_and_never_after_close():
    sched = SingleStreamScheduler(SingleStreamPolicy(lookahead=2))
    assert sched.next() == STREAM_WAIT and sched.entered == 0 and sched.frames == 0
    sched.push([4])
    assert sched.next() == StreamPosition.of_token(0, 4)
    assert sched.next() == STREAM_WAIT  # item 1 belongs to the lead-in: no frame before it
    sched.close()
    assert sched.next() == STREAM_TEXT_END and sched.done
    assert [sched.next() for _ in range(3)] == [StreamPosition.of_frame(f) for f in range(3)]
    with pytest.raises(ValueError, match="after close"):
        sched.push([5])


@PROPERTY
@given(policies(), token_lists, estimates, st.data())
def test_snapshot_restore_resumes_identically(policy, tokens, est, data):
    sched = SingleStreamScheduler(policy, est)
    head = data.draw(st.integers(0, len(tokens)))
    sched.push(tokens[:head])
    for _ in range(data.draw(st.integers(0, 12))):
        sched.next()
    state = sched.snapshot()
    frozen = (state.tokens, state.entered, state.frames, state.clock)
    twin = sched.copy()

    def run(s: SingleStreamScheduler) -> list:
        out = [s.next() for _ in range(5)]
        s.push(tokens[head:])
        s.close()
        return out + [s.next() for _ in range(len(tokens) + 10)]

    first = run(sched)
    assert (state.tokens, state.entered, state.frames, state.clock) == frozen
    sched.restore(state)
    assert run(sched) == first == run(twin)
    fresh = SingleStreamScheduler(SingleStreamPolicy(), est)
    fresh.restore(state)
    assert run(fresh) == first


def test_set_speed_changes_later_tokens_only():
    policy = SingleStreamPolicy(
        lookahead=0, frames_per_token=2.0, min_frames_per_token=0.5, max_frames_per_token=4.0
    )
    sched = SingleStreamScheduler(policy)
    sched.push([1, 2, 3])
    sched.close()
    assert sched.next().is_text  # token 0 starts: its 2 frames are fixed now
    sched.set_speed(2.0)  # 1 frame per token from token 1 on
    got = [sched.next() for _ in range(7)]
    frames_before = [sum(q.is_speech for q in got[:i]) for i, p in enumerate(got) if p.is_text]
    assert frames_before == [2, 3, 4]  # T = 0, 2, 3, 4


# -- training -------------------------------------------------------------------------------------


@st.composite
def alignments(draw: st.DrawFn, n: int, n_frames: int) -> list[int] | None:
    kind = draw(st.sampled_from(["none", "random", "dense"]))
    if kind == "none":
        return None
    if kind == "random":
        values = st.integers(0, n_frames - 1)
    else:  # words of several tokens at one frame, or more tokens than frames
        low = draw(st.integers(0, n_frames - 1))
        values = st.integers(low, min(n_frames - 1, low + 2))
    return sorted(draw(st.lists(values, min_size=n, max_size=n)))


@st.composite
def training_cases(draw: st.DrawFn) -> tuple:
    tokens = draw(st.lists(st.integers(0, 60), max_size=15))
    n_frames = draw(st.integers(1, 40))
    return draw(policies()), tokens, n_frames, draw(alignments(len(tokens), n_frames))


def _fits(policy: SingleStreamPolicy, n: int, n_frames: int, alignment) -> bool:
    """The documented error condition, computed independently."""
    lookahead, (lo, _) = policy.lookahead, _bounds(policy)
    if n < lookahead or n == 0:  # TEXT_END enters in the lead-in or before frame 0
        return True
    if alignment is not None:
        return math.floor((n - lookahead) * lo + HALF) <= n_frames
    d = Fraction(min(max(n_frames / n, policy.min_frames_per_token), policy.max_frames_per_token))
    return math.floor((n - lookahead) * d / Fraction(policy.speed) + HALF) <= n_frames


@PROPERTY
@given(training_cases())
def test_training_invariants(case):
    policy, tokens, n_frames, alignment = case
    n = len(tokens)
    if not _fits(policy, n, n_frames, alignment):
        with pytest.raises(ValueError, match="do not fit"):
            build_single_stream(tokens, n_frames, policy, alignment)
        return
    result = build_single_stream(tokens, n_frames, policy, alignment)
    lo, hi = _bounds(policy)
    assert len(result.durations) == n and all(lo <= d <= hi for d in result.durations)
    clocks = [sum(result.durations[:k], Fraction(0)) for k in range(n + 1)]
    assert list(result.starts) == [math.floor(c + HALF) for c in clocks]
    stream = result.positions
    _check_all(stream, tokens, policy, result.starts)
    assert [p.frame for p in stream if p.is_speech] == list(range(n_frames))
    assert result.lead_in >= min(policy.lookahead + 1, n + 1)


@PROPERTY
@given(policies(), st.lists(st.integers(0, 60), min_size=1, max_size=15), st.integers(1, 40))
def test_training_without_alignment_is_the_decode_stream(policy, tokens, n_frames):
    if not _fits(policy, len(tokens), n_frames, None):
        return
    rate = min(
        max(n_frames / len(tokens), policy.min_frames_per_token), policy.max_frames_per_token
    )
    sched = SingleStreamScheduler(policy.replace(frames_per_token=rate))
    sched.push(tokens)
    sched.close()
    expected = []
    while (p := sched.next()) != StreamPosition.of_frame(n_frames):  # cut before frame N
        expected.append(p)
    assert list(build_single_stream(tokens, n_frames, policy).positions) == expected


@PROPERTY
@given(training_cases())
def test_training_with_alignment_is_the_decode_stream_under_its_durations(case):
    policy, tokens, n_frames, alignment = case
    if alignment is None or not _fits(policy, len(tokens), n_frames, alignment):
        return
    ids = list(range(len(tokens)))  # distinct ids, so an id -> duration table is per token
    result = build_single_stream(ids, n_frames, policy, alignment)
    table = {i: d * Fraction(policy.speed) for i, d in zip(ids, result.durations, strict=True)}
    sched = SingleStreamScheduler(policy, table.__getitem__)
    sched.push(ids)
    sched.close()
    expected = []
    while (p := sched.next()) != StreamPosition.of_frame(n_frames):
        expected.append(p)
    assert list(result.positions) == expected


@PROPERTY
@given(policies(), st.lists(st.integers(1, 6), max_size=12), st.data())
def test_alignment_inside_the_bounds_is_reproduced(policy, gaps, data):
    lo, hi = _bounds(policy)
    gaps = [g for g in gaps if lo <= g <= hi]
    if not gaps:
        return
    # Token k starts at the sum of the first k gaps; the last gap runs to the end of the frames.
    starts = [sum(gaps[:k]) for k in range(len(gaps) + 1)]
    n_frames, alignment = starts[-1], starts[:-1]
    tokens = data.draw(st.lists(st.integers(0, 60), min_size=len(gaps), max_size=len(gaps)))
    result = build_single_stream(tokens, n_frames, policy, alignment)
    assert list(result.starts) == starts
    assert list(result.durations) == gaps


@PROPERTY
@given(training_cases())
def test_dense_alignment_keeps_the_bound_and_is_late_only_at_the_fastest_rate(case):
    policy, tokens, n_frames, alignment = case
    if alignment is None or not _fits(policy, len(tokens), n_frames, alignment):
        return
    lo, _ = _bounds(policy)
    result = build_single_stream(tokens, n_frames, policy, alignment)
    targets = [*alignment, n_frames]
    late = [k for k, (f, a) in enumerate(zip(result.starts, targets, strict=True)) if f > a]
    if all(k * lo <= a for k, a in enumerate(targets)):
        assert late == []  # the text is never behind the real speech when it can be avoided
    assert all(result.durations[k - 1] == lo for k in late)


def test_dense_word_moves_earlier():
    # Six tokens all realised from frame 5 (one long word): with lo = 1/2 they cannot all enter
    # at frame 5, so the earlier ones move earlier, at the fastest rate: T = 0, 3, 3.5, 4, 4.5, 5.
    policy = SingleStreamPolicy(
        lookahead=1, frames_per_token=1.0, min_frames_per_token=0.5, max_frames_per_token=4.0
    )
    result = build_single_stream([1, 2, 3, 4, 5, 6], 10, policy, [5] * 6)
    assert result.starts == (0, 3, 4, 4, 5, 5, 9)
    kinds = "".join("f" if p.is_speech else "t" for p in result.positions)
    assert kinds == "tt" + "fff" + "t" + "f" + "tt" + "f" + "tt" + "fffff"


def test_dense_start_is_late_at_the_fastest_rate():
    # Four tokens at frame 0 with lo = 1: no room before frame 0, so tokens 1..3 start late,
    # one frame apart, and the clock catches up with the end of the speech at rate hi = 2.
    policy = SingleStreamPolicy(
        lookahead=0, frames_per_token=1.0, min_frames_per_token=1.0, max_frames_per_token=2.0
    )
    result = build_single_stream([1, 2, 3, 4], 8, policy, [0, 0, 0, 0])
    assert result.starts == (0, 1, 2, 3, 5)
    assert result.durations == (1, 1, 1, 2)


def test_text_too_long_for_the_frames():
    policy = SingleStreamPolicy(
        lookahead=0, frames_per_token=1.0, min_frames_per_token=1.0, max_frames_per_token=2.0
    )
    with pytest.raises(ValueError, match="do not fit"):
        build_single_stream(list(range(10)), 3, policy, [0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    with pytest.raises(ValueError, match="do not fit"):
        build_single_stream(list(range(10)), 3, policy)
    # The same text fits with a lower bound of 1/4 frame per token.
    fast = policy.replace(min_frames_per_token=0.25)
    result = build_single_stream(list(range(10)), 3, fast, [0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    assert sum(p.is_speech for p in result.positions) == 3


# -- the checkers can fail ------------------------------------------------------------------------


def test_checkers_reject_broken_streams():
    policy = SingleStreamPolicy(
        lookahead=1, frames_per_token=2.0, min_frames_per_token=1.0, max_frames_per_token=3.0
    )
    tokens = [5, 6, 7, 8]
    good = _decode(policy, tokens, None)
    starts = _spec_starts(policy, tokens, None)
    _check_all(good, tokens, policy, starts)
    lo, hi = _bounds(policy)
    text_at = [i for i, p in enumerate(good) if p.is_text]
    swapped = list(good)
    swapped[text_at[1]], swapped[text_at[2]] = swapped[text_at[2]], swapped[text_at[1]]
    burst = [p for p in good if p.is_text] + [p for p in good if p.is_speech]  # all text first
    stalled = [p for p in good if not p.is_text or p.text.index < 2]  # text stops coming
    stalled += [p for p in good if p.is_text and p not in stalled]
    with pytest.raises(AssertionError):
        _check_order(swapped, tokens)
    with pytest.raises(AssertionError):
        _check_prefix_rates(burst, len(tokens), 1, lo, hi)
    with pytest.raises(AssertionError):
        _check_windows(burst, len(tokens), 1, lo, hi)
    with pytest.raises(AssertionError):
        _check_lookahead(burst, len(tokens), 1, starts)
    with pytest.raises(AssertionError):
        _check_prefix_rates(stalled, len(tokens), 1, lo, hi)


# -- API details ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lookahead": -1}, "lookahead"),
        ({"lookahead": True}, "lookahead"),
        ({"min_frames_per_token": 0.0}, "min_frames_per_token"),
        ({"min_frames_per_token": 3.0, "max_frames_per_token": 2.0}, "must not exceed"),
        ({"frames_per_token": 9.0}, "must lie within"),
        ({"speed": float("nan")}, "speed"),
    ],
)
def test_policy_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        SingleStreamPolicy(**fields)


def test_policy_allows_rates_below_one_frame_per_token():
    policy = SingleStreamPolicy(min_frames_per_token=0.25, frames_per_token=0.5, speed=2.0)
    assert policy.token_frames() == Fraction(1, 4)
    assert policy.token_frames(0.1) == Fraction(1, 8) == policy.lo
    assert policy.token_frames(100.0) == policy.hi == 4
    with pytest.raises(ValueError, match="estimate"):
        policy.token_frames(float("inf"))


def test_position_validation():
    with pytest.raises(ValueError, match="exactly one"):
        StreamPosition(None, None)
    with pytest.raises(ValueError, match="exactly one"):
        StreamPosition(TEXT_END, 3)
    with pytest.raises(ValueError, match="PAD"):
        StreamPosition(PAD, None)
    with pytest.raises(ValueError, match=">= 0"):
        StreamPosition.of_frame(-1)
    assert STREAM_WAIT.is_wait and not STREAM_WAIT.is_text and not STREAM_WAIT.is_speech
    assert repr(StreamPosition.of_frame(2)) == "Frame(2)"


@pytest.mark.parametrize(
    ("alignment", "message"),
    [([0, 1], "2 entries for 3"), ([0, 2, 1], "decreases"), ([0, 1, 9], "outside")],
)
def test_alignment_validation(alignment, message):
    with pytest.raises(ValueError, match=message):
        build_single_stream([1, 2, 3], 9, SingleStreamPolicy(), alignment)
    with pytest.raises(ValueError, match="n_frames"):
        build_single_stream([1, 2, 3], 0, SingleStreamPolicy())
