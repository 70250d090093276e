"""Text for the talker: incremental tokenisation and splitting into utterances.

Text may arrive whole or in pieces (e.g. from an LLM). :class:`TextFeed` turns it into token
ids segment by segment. Both paths give the same tokens and the same segments, because every
decision is taken word by word, in order, on complete words only:

* A *word* ends where a whitespace run starts, or after CJK punctuation (the Qwen pre-tokenizer
  never merges across those points, so the tokens of a text prefix ending there are a prefix of
  the tokens of the whole text). A word is released once the next one has begun or the text is
  finished: a word still being written may change.
* A front end whose conversion looks across words (phonemes: espeak-ng reads "the" before a
  vowel differently, and "Dr." or "1,000" from their neighbours) passes ``cuts`` that find
  larger units, whole clauses (:func:`omnispeech.pipelines.espeak.clause_ends`); a unit is
  then released once the next has begun, exactly as a word is.
* A segment (one utterance for the talker) takes words until it holds at least ``min_tokens``
  tokens and a word ends a sentence, or until the next word would exceed ``max_tokens``; a single
  word longer than ``max_tokens`` is cut between tokens. Text over the model's limit is split
  this way, never truncated.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from omnispeech.errors import InputError

# Where the tokenizer's pre-tokenisation always splits: before a whitespace run, or after a run
# of CJK (fullwidth) punctuation.
_BOUNDARY = re.compile(r"(?<=\S)(?=\s)|(?<=[\u3000-\u303f\uff01-\uff0f\uff1a-\uff20])(?=\S)")
_SENTENCE_END = re.compile(r"[.!?;:\u2026\u3002\uff01\uff1f\uff1b][\"')\]\u201d\u2019\u300d]*\s*$")

SEGMENT_END = None  # what :meth:`TextFeed.take` returns when the current segment is complete


def word_ends(text: str) -> list[int]:
    """Character offsets where the words of ``text`` end (see the module docstring)."""
    return [m.start() for m in _BOUNDARY.finditer(text)]


class TextFeed:
    """Text pieces in, token ids out, in segments of at most ``max_tokens``.

    Args:
        tokenize: text -> token ids of that text as the model's prompt holds it.
        max_tokens: most text tokens in one segment (the model's per-utterance limit).
        min_tokens: a segment ends at the first sentence end once it holds this many tokens
            (default ``max_tokens // 2``).
        cuts: text -> offsets where its units end (default :func:`word_ends`). ``tokenize``
            of text that ends at a cut must give a prefix of the tokens of any longer text,
            and a prefix of a text must have a prefix of its cuts.
    """

    def __init__(
        self,
        tokenize: Callable[[str], list[int]],
        max_tokens: int,
        min_tokens: int | None = None,
        cuts: Callable[[str], list[int]] = word_ends,
    ) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self._tokenize = tokenize
        self._cuts = cuts
        self.max_tokens = max_tokens
        self.min_tokens = max_tokens // 2 if min_tokens is None else min_tokens
        self._pending = ""  # text received and not yet placed in a segment
        self._finished = False
        self._segment_text = ""  # text of the current segment so far (whole words)
        self._segment_tokens: list[int] = []
        self._out: list[int | None] = []  # ready: token ids and SEGMENT_END markers
        self.segments = 0  # completed segments

    @property
    def finished(self) -> bool:
        return self._finished

    def add(self, piece: str) -> None:
        """Append text as it arrives."""
        if self._finished:
            raise InputError("text added after the text was finished")
        self._pending += piece
        self._release()

    def finish(self) -> None:
        """The text is complete: the last word and segment are released."""
        if not self._finished:
            self._finished = True
            self._release()

    def take(self) -> list[int] | None:
        """Tokens ready for the current segment (possibly ``[]``: wait for more text), or
        :data:`SEGMENT_END` when the current segment is complete and every token of it taken.
        After the last segment, ``[]`` forever."""
        tokens: list[int] = []
        while self._out:
            item = self._out[0]
            if item is SEGMENT_END:
                if tokens:
                    return tokens
                self._out.pop(0)
                return SEGMENT_END
            tokens.append(self._out.pop(0))
        return tokens

    @property
    def exhausted(self) -> bool:
        """Finished and everything taken."""
        return self._finished and not self._out

    # -- internals ------------------------------------------------------------------------------
    def _words(self) -> list[str]:
        """Complete words (units) of the pending text (the last one only once finished)."""
        words, start = [], 0
        for cut in self._cuts(self._pending):
            words.append(self._pending[start:cut])
            start = cut
        if self._finished and start < len(self._pending):
            words.append(self._pending[start:])
            start = len(self._pending)
        self._pending = self._pending[start:]
        return words

    def _release(self) -> None:
        for word in self._words():
            self._place(word)
        if self._finished and self._segment_text.strip():
            self._close_segment()

    def _place(self, word: str) -> None:
        if not self._segment_text:
            word = word.lstrip()  # a segment never starts with the space between sentences
            if not word:
                return
        text = self._segment_text + word
        tokens = self._tokenize(text)
        if len(tokens) > self.max_tokens:
            if self._segment_tokens:
                # The word does not fit: it opens the next segment.
                self._close_segment()
                self._place(word)
                return
            # One word longer than a whole segment: cut it between tokens, a segment per piece.
            for i in range(0, len(tokens), self.max_tokens):
                self._emit(tokens[i : i + self.max_tokens])
                self._close_segment()
            return
        self._emit(tokens[len(self._segment_tokens) :])
        self._segment_text = text
        if len(self._segment_tokens) >= self.min_tokens and _SENTENCE_END.search(text):
            self._close_segment()

    def _emit(self, tokens: list[int]) -> None:
        self._segment_tokens.extend(tokens)
        self._out.extend(tokens)

    def _close_segment(self) -> None:
        if self._segment_tokens:
            self._out.append(SEGMENT_END)
            self.segments += 1
        self._segment_text = ""
        self._segment_tokens = []
