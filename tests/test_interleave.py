"""ARIA interleaver: property tests of the stream invariants, and the released arrangements.

Invariants checked (``n`` tokens, item ``n`` = TEXT_END, ``L`` = look-ahead):

1. every token enters exactly once, in order, then TEXT_END once, then only PAD;
2. rate: consecutive speech-frame entries are ``min_gap..max_gap`` frames apart and, while text
   remains, no PAD run at speech positions exceeds ``max_gap - 1`` (the first run starts at frame
   0); at decode time, ``k * lo - 1/2 < F_k <= k * hi + 1/2`` at every prefix;
3. look-ahead: when frame ``f`` is produced, ``entered(f) >= min(n + 1, started(f) + L)``
   (exactly equal at decode time), ``started(f)`` = tokens whose speech has started by ``f``
   (at decode time the end of the text counts as token ``n``, starting at ``F_n``);
4. text pushed in random pieces, interleaved with ``next()``, gives the full-text stream, and
   ``WAIT`` comes only when the full-text stream's next entry has not arrived.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnispeech.interleave import (
    ALL_TEXT,
    PAD,
    TEXT_END,
    ItemKind,
    Position,
    RatePolicy,
    Scheduler,
    TextItem,
    build_training_stream,
    omni_talker,
    tts_icl,
    tts_non_streaming,
    tts_prefix_positions,
    tts_streaming,
)

PROPERTY = settings(max_examples=200, deadline=None)


def _estimate(token: int) -> float:
    """A per-token duration estimate that often falls outside the bounds (so it gets clamped)."""
    return 0.5 + (token % 7) * 0.75


@st.composite
def policies(draw: st.DrawFn) -> RatePolicy:
    lo = draw(st.floats(0.25, 4.0))
    hi = draw(st.floats(lo, 6.0))
    return RatePolicy(
        lookahead=draw(st.one_of(st.integers(0, 4), st.just(ALL_TEXT))),
        frames_per_token=draw(st.floats(lo, hi)),
        min_frames_per_token=lo,
        max_frames_per_token=hi,
        speed=draw(st.floats(0.5, 2.5)),
    )


token_lists = st.lists(st.integers(0, 60), max_size=25)
estimates = st.sampled_from([None, _estimate])


def _length(policy: RatePolicy, n: int) -> int:
    """Positions enough to see TEXT_END and a few PADs after it."""
    return min(policy.lookahead, n + 1) + (n + 1) * policy.max_gap + 3


def _decode(policy: RatePolicy, tokens: Sequence[int], est: Callable | None) -> list[Position]:
    sched = Scheduler(policy, est)
    sched.push(tokens)
    sched.close()
    stream = [sched.next() for _ in range(_length(policy, len(tokens)))]
    assert not any(p.is_wait for p in stream)
    return stream


def _item_number(item: TextItem, n: int) -> int:
    return item.index if item.kind is ItemKind.TOKEN else n


def _check_once_in_order(stream: list[Position], tokens: Sequence[int]) -> None:
    n = len(tokens)
    entered = [p.text for p in stream if p.text.kind in (ItemKind.TOKEN, ItemKind.TEXT_END)]
    assert entered == [TextItem.of_token(i, t) for i, t in enumerate(tokens)] + [TEXT_END]
    end = next(i for i, p in enumerate(stream) if p.text == TEXT_END)
    assert all(p.text == PAD for p in stream[end + 1 :])
    # Lead-in first, then frames 0, 1, 2, ... one per position.
    lead = sum(1 for p in stream if p.frame is None)
    assert all(p.frame is None for p in stream[:lead])
    assert [p.frame for p in stream[lead:]] == list(range(len(stream) - lead))
    assert all(_item_number(p.text, n) < n + 1 for p in stream)


def _check_gaps(stream: list[Position], policy: RatePolicy) -> None:
    speech_entries = [p.frame for p in stream if p.frame is not None and p.text != PAD]
    for a, b in pairwise(speech_entries):
        assert policy.min_gap <= b - a <= policy.max_gap
    run = 0  # PAD speech positions since the last entry (or since frame 0)
    for p in stream:
        if p.text == TEXT_END:
            break  # no text remains: PAD from here on is free
        if p.frame is None:
            continue
        run = run + 1 if p.text == PAD else 0
        assert run <= policy.max_gap - 1


def _entered_by_frame(stream: list[Position]) -> dict[int, int]:
    """Frame -> text items entered up to and including the position producing it."""
    out, entered = {}, 0
    for p in stream:
        entered += p.text != PAD
        if p.frame is not None:
            out[p.frame] = entered
    return out


def _nominal_starts(policy: RatePolicy, tokens: Sequence[int], est: Callable | None) -> list:
    """The spec: token k starts at F_k = floor(T_k + 1/2), T_{k+1} = T_k + token_frames(k)."""
    clock, starts = Fraction(0), []
    for t in tokens:
        starts.append(math.floor(clock + Fraction(1, 2)))
        clock += policy.token_frames(None if est is None else est(t))
    return [*starts, math.floor(clock + Fraction(1, 2))]  # and the end of the text, "token n"


@st.composite
def training_cases(draw: st.DrawFn) -> tuple:
    tokens = draw(token_lists)
    n_frames = draw(st.integers(1, 60))
    alignment = draw(
        st.one_of(
            st.none(),
            st.lists(st.integers(0, n_frames - 1), min_size=len(tokens), max_size=len(tokens)).map(
                sorted
            ),
        )
    )
    return draw(policies()), tokens, n_frames, alignment


def _training_starts(policy, tokens, n_frames, alignment) -> list[int]:
    if alignment is not None:
        return list(alignment)
    d = policy.token_frames(n_frames / len(tokens)) if tokens else Fraction(1)
    return [min(n_frames - 1, math.floor(k * d + Fraction(1, 2))) for k in range(len(tokens))]


# -- 1. every token exactly once, in order --------------------------------------------------------


@PROPERTY
@given(policies(), token_lists, estimates)
def test_decode_tokens_once_in_order(policy, tokens, est):
    _check_once_in_order(_decode(policy, tokens, est), tokens)


@PROPERTY
@given(training_cases())
def test_training_tokens_once_in_order(case):
    policy, tokens, n_frames, alignment = case
    stream = build_training_stream(tokens, n_frames, policy, alignment)
    _check_once_in_order(stream, tokens)
    assert sum(1 for p in stream if p.frame is not None) == n_frames


# -- 2. speech/text rate bounds at every prefix ---------------------------------------------------


@PROPERTY
@given(policies(), token_lists, estimates)
def test_decode_rate_bounds(policy, tokens, est):
    stream = _decode(policy, tokens, est)
    _check_gaps(stream, policy)
    lo = max(Fraction(1), Fraction(policy.min_frames_per_token) / Fraction(policy.speed))
    hi = max(Fraction(1), Fraction(policy.max_frames_per_token) / Fraction(policy.speed))
    starts = [p.frame for p in stream if p.frame is not None and p.text != PAD]
    for k, frame in enumerate(starts):  # frame at which token k starts (item L + k enters)
        assert k * lo - Fraction(1, 2) < frame <= k * hi + Fraction(1, 2)


@PROPERTY
@given(training_cases())
def test_training_rate_bounds(case):
    policy, tokens, n_frames, alignment = case
    _check_gaps(build_training_stream(tokens, n_frames, policy, alignment), policy)


# -- 3. look-ahead --------------------------------------------------------------------------------


@PROPERTY
@given(policies(), token_lists, estimates)
def test_decode_lookahead(policy, tokens, est):
    n, stream = len(tokens), _decode(policy, tokens, est)
    starts = _nominal_starts(policy, tokens, est)
    for f, entered in _entered_by_frame(stream).items():
        started = sum(1 for s in starts if s <= f)
        assert entered == min(n + 1, started + policy.lookahead)


@PROPERTY
@given(training_cases())
def test_training_lookahead(case):
    policy, tokens, n_frames, alignment = case
    n = len(tokens)
    stream = build_training_stream(tokens, n_frames, policy, alignment)
    starts = _training_starts(policy, tokens, n_frames, alignment)
    assert sum(1 for p in stream if p.is_lead_in) >= min(policy.lookahead, n + 1)
    for f, entered in _entered_by_frame(stream).items():
        started = sum(1 for s in starts if s <= f)
        assert entered >= min(n + 1, started + policy.lookahead)


# -- 4. incremental text gives the full-text stream -----------------------------------------------


@PROPERTY
@given(policies(), token_lists, estimates, st.data())
def test_incremental_equals_full(policy, tokens, est, data):
    expected = _decode(policy, tokens, est)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(tokens)), max_size=8)))
    bounds = [0, *cuts, len(tokens)]
    chunks = deque(tokens[a:b] for a, b in pairwise(bounds))
    push_first = data.draw(st.lists(st.booleans(), min_size=len(expected), max_size=len(expected)))

    sched, got, pushed = Scheduler(policy, est), [], 0
    while len(got) < len(expected):
        if push_first[len(got)] and chunks:
            chunk = chunks.popleft()
            sched.push(chunk)
            pushed += len(chunk)
        step = sched.next()
        if step.is_wait:
            assert not sched.closed
            # WAIT only when the full-text stream's next entry has not arrived yet.
            due = expected[len(got)].text
            assert due != PAD and _item_number(due, len(tokens)) >= pushed
            if chunks:
                chunk = chunks.popleft()
                sched.push(chunk)
                pushed += len(chunk)
            else:
                sched.close()
            continue
        got.append(step)
    assert got == expected


# -- released arrangements ------------------------------------------------------------------------

# Dossier examples: 7 text tokens, language and speaker set; ICL: 5 + 7 tokens, 20 frames.
SEVEN = [101, 102, 103, 104, 105, 106, 107]
REF = [201, 202, 203, 204, 205]


def test_tts_streaming_arrangement():
    arr = tts_streaming(SEVEN)
    assert arr.prefill == (Position(TextItem.of_token(0, 101), 0),)
    assert arr.trailing == (*[TextItem.of_token(i, SEVEN[i]) for i in range(1, 7)], TEXT_END)
    assert tts_prefix_positions(language=True, speaker=True) + len(arr.prefill) == 10
    assert len(arr.trailing) == 7
    assert tts_prefix_positions(language=False, speaker=False) + len(arr.prefill) == 8
    assert arr.text_at(5) == TextItem.of_token(6, 107) and arr.text_at(6) == TEXT_END
    assert arr.text_at(7) == PAD and arr.first_generated_frame == 0
    with pytest.raises(ValueError, match="at least one"):
        tts_streaming([])


def test_tts_non_streaming_arrangement():
    arr = tts_non_streaming(SEVEN)
    text = [Position(TextItem.of_token(i, t), None) for i, t in enumerate(SEVEN)]
    assert arr.prefill == (*text, Position(TEXT_END, None), Position(PAD, 0))
    assert arr.trailing == () and arr.text_at(0) == PAD
    assert tts_prefix_positions(language=True, speaker=True) + len(arr.prefill) == 18


def test_tts_icl_streaming_arrangement():
    arr = tts_icl(REF, SEVEN, 20, streaming=True)
    items = [TextItem.of_token(i, t) for i, t in enumerate(REF + SEVEN)] + [TEXT_END]
    assert [p.text for p in arr.prefill] == items + [PAD] * 8  # 13 text items on 21 positions
    assert [p.frame for p in arr.prefill] == list(range(21))
    assert arr.trailing == () and arr.first_generated_frame == 20
    assert tts_prefix_positions(language=True, speaker=True) + len(arr.prefill) == 30
    # Text longer than codec_bos + reference frames: the excess becomes trailing text.
    short = tts_icl(REF, SEVEN, 4, streaming=True)
    assert [p.text for p in short.prefill] == items[:5]
    assert short.trailing == tuple(items[5:])
    # Equal lengths: nothing trails.
    exact = tts_icl(REF, SEVEN, 12, streaming=True)
    assert [p.text for p in exact.prefill] == items and exact.trailing == ()
    with pytest.raises(ValueError, match="reference frame"):
        tts_icl(REF, SEVEN, 0, streaming=True)


def test_tts_icl_non_streaming_arrangement():
    arr = tts_icl(REF, SEVEN, 20, streaming=False)
    items = [TextItem.of_token(i, t) for i, t in enumerate(REF + SEVEN)] + [TEXT_END]
    assert arr.prefill == (
        *[Position(item, None) for item in items],
        *[Position(PAD, f) for f in range(21)],
    )
    assert arr.trailing == () and arr.reference_frames == 20
    assert tts_prefix_positions(language=True, speaker=True) + len(arr.prefill) == 43


def test_omni_talker_arrangement():
    arr = omni_talker(SEVEN)
    assert arr == tts_streaming(SEVEN)
    with pytest.raises(ValueError):
        omni_talker([])


@pytest.mark.parametrize(
    ("arrangement", "text", "streaming_text"),
    [
        (tts_streaming(SEVEN), SEVEN, True),
        (tts_non_streaming(SEVEN), SEVEN, False),
        (tts_icl(REF, SEVEN, 20, streaming=True), REF + SEVEN, True),
        (tts_icl(REF, SEVEN, 4, streaming=True), REF + SEVEN, True),
        (tts_icl(REF, SEVEN, 20, streaming=False), REF + SEVEN, False),
        (omni_talker(SEVEN), SEVEN, True),
        (tts_non_streaming([]), [], False),
    ],
)
def test_released_arrangements_equal_scheduler(arrangement, text, streaming_text):
    expected = arrangement.stream(30)
    sched = Scheduler(RatePolicy.released(streaming_text=streaming_text))
    sched.push(text)
    sched.close()
    assert [sched.next() for _ in expected] == expected


# -- API details ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lookahead": -1}, "lookahead"),
        ({"lookahead": 1.5}, "lookahead"),
        ({"speed": 0.0}, "speed"),
        ({"speed": float("inf")}, "speed"),
        ({"min_frames_per_token": 3.0, "max_frames_per_token": 2.0}, "must not exceed"),
        ({"frames_per_token": 5.0, "max_frames_per_token": 2.0}, "must lie within"),
        ({"max_frames_per_token": float("nan")}, "max_frames_per_token"),
    ],
)
def test_rate_policy_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        RatePolicy(**fields)


@pytest.mark.parametrize(
    ("alignment", "message"),
    [
        ([0, 1], "2 entries for 3"),
        ([0, 2, 1], "decreases"),
        ([0, 1, 9], "outside"),
        ([-1, 0, 0], "outside"),
    ],
)
def test_alignment_validation(alignment, message):
    with pytest.raises(ValueError, match=message):
        build_training_stream([1, 2, 3], 9, RatePolicy(), alignment)


def test_training_without_alignment_is_the_scheduler_stream():
    policy = RatePolicy(
        lookahead=2, frames_per_token=2.0, min_frames_per_token=1.0, max_frames_per_token=4.0
    )
    tokens = list(range(10, 20))  # 10 tokens over 30 frames: 3 frames per token
    sched = Scheduler(policy.replace(frames_per_token=3.0))
    sched.push(tokens)
    sched.close()
    expected = [sched.next() for _ in range(2 + 30)]
    assert build_training_stream(tokens, 30, policy) == expected


def test_snapshot_restore_and_errors():
    sched = Scheduler(RatePolicy(lookahead=1, frames_per_token=2.0, max_frames_per_token=2.0))
    sched.push([5, 6, 7])
    first = [sched.next() for _ in range(3)]
    state = sched.snapshot()
    twin = sched.copy()
    run = [sched.next() for _ in range(5)]
    sched.restore(state)
    assert [sched.next() for _ in range(5)] == run == [twin.next() for _ in range(5)]
    assert first[0] == Position(TextItem.of_token(0, 5), None)
    sched.close()
    with pytest.raises(ValueError, match="after close"):
        sched.push([8])


def test_package_does_not_import_torch():
    code = (
        "import sys, omnispeech.interleave; "
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
