"""The text feed: whole text and the same text in pieces give the same tokens and segments;
segments respect the limit; no text is lost."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnispeech.errors import InputError
from omnispeech.pipelines.tts_text import SEGMENT_END, TextFeed
from omnispeech.testing import tiny_tokenizer

TOK = tiny_tokenizer()


def encode(text: str) -> list[int]:
    return TOK.encode(text, add_special_tokens=False).ids


def drain(feed: TextFeed, out: list) -> None:
    while True:
        got = feed.take()
        if got is SEGMENT_END:
            out.append("|")
        elif got:
            out.extend(got)
        else:
            return


def run(pieces: list[str], max_tokens: int) -> list:
    feed = TextFeed(encode, max_tokens)
    out: list = []
    for piece in pieces:
        feed.add(piece)
        drain(feed, out)
    feed.finish()
    drain(feed, out)
    assert feed.exhausted
    return out


def segments(stream: list) -> list[list[int]]:
    out, current = [], []
    for item in stream:
        if item == "|":
            out.append(current)
            current = []
        else:
            current.append(item)
    assert not current  # the last segment is always closed
    return out


WORDS = st.sampled_from(
    ["the", "cat", "sat", "Supercalifragilistic", "ran.", "away!", "why?", "1984,", "x",
     "你好，", "世界。", "ok;", "  ", "\n", "it's", "café"]
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(WORDS, min_size=1, max_size=30),
    cuts=st.lists(st.integers(0, 400), max_size=12),
    max_tokens=st.integers(3, 40),
)
def test_pieces_equal_whole_text(words, cuts, max_tokens):
    text = " ".join(words)
    bounds = sorted({c % (len(text) + 1) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)], strict=True)]
    whole = run([text], max_tokens)
    assert run(pieces, max_tokens) == whole
    segs = segments(whole)
    assert all(0 < len(s) <= max_tokens for s in segs)
    # Nothing is lost: the segments' tokens spell the text, up to the spaces between segments
    # (decoded together: a word longer than a segment is cut between byte-level tokens).
    joined = TOK.decode([t for s in segs for t in s])
    assert joined.replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")


def test_sentences_end_segments_once_half_full():
    text = "one two three four five. six seven. eight nine ten eleven twelve!"
    segs = [TOK.decode(s) for s in segments(run([text], 40))]
    assert segs[0].endswith("five.")
    assert len(segs) >= 2 and all(len(encode(s)) <= 40 for s in segs)


def test_short_text_is_one_segment_and_words_wait_for_their_end():
    feed = TextFeed(encode, 100)
    feed.add("Hello wor")
    assert TOK.decode(feed.take()) == "Hello"  # "wor" may still grow
    feed.add("ld")
    assert feed.take() == []
    feed.finish()
    assert TOK.decode(feed.take()) == " world"
    assert feed.take() is SEGMENT_END
    assert feed.take() == [] and feed.exhausted


def test_add_after_finish_is_an_error():
    feed = TextFeed(encode, 10)
    feed.finish()
    with pytest.raises(InputError):
        feed.add("more")
