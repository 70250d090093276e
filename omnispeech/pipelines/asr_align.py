"""Word timestamps and forced alignment from a CTC head on the AuT encoder's tokens.

The encoder emits 13 tokens per 1-s chunk of 100 mel frames; token ``i`` of chunk ``c``
covers mel frames ``100 c + 8 i`` to ``100 c + 8 i + 8`` (80 ms), the last one of a chunk
only up to the chunk's end. The CTC head scores every vocabulary entry and a blank at each
token; the Viterbi path through the transcript's tokens (each once, in order, blanks between)
gives each token the encoder steps it occupies, and words take the span of their tokens.

A transcript that is not what the audio says forces an unlikely path: the gap between the
best unconstrained path and the forced one, per encoder step, measures that, and above
``MISMATCH_NATS`` the alignment is refused rather than returned as fiction.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from omnispeech.errors import InputError

# Mean log-probability gap (nats per encoder step) between the best path and the forced one
# above which the transcript is taken not to match the audio. Set by
# recipes/asr/calibrate_align.py with the bundled model on 312 dev utterances: gaps of the own
# transcript 0.54 / 1.40 / 3.01 (5th / 50th / 95th percentile), of another sentence of the same
# language 1.27 / 3.45 / 7.03; 2.3 separates them best (balanced accuracy 0.80).
MISMATCH_NATS = 2.3


class AlignmentError(InputError):
    """The transcript cannot be aligned to the audio (it does not match, or is too long)."""


@dataclasses.dataclass(frozen=True)
class TimedSpan:
    """A word or token with its time in the audio.

    Attributes:
        text: the word (or token) as written.
        start: seconds from the start of the audio.
        end: seconds; ``end > start``.
        score: mean probability of its path steps, in [0, 1] (a confidence).
    """

    text: str
    start: float
    end: float
    score: float

    def to_dict(self) -> dict[str, float | str]:
        return {
            "word": self.text,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "score": round(self.score, 3),
        }


@dataclasses.dataclass(frozen=True)
class Alignment:
    """Words and tokens of a transcript placed in time; ``gap`` is the mismatch measure
    (nats per encoder step between the best path and the forced one, 0 = perfect)."""

    words: tuple[TimedSpan, ...]
    tokens: tuple[TimedSpan, ...]
    gap: float


def step_times(num_steps: int, chunk_frames: int = 100, per_chunk: int = 13) -> np.ndarray:
    """``[num_steps, 2]`` start and end seconds of each encoder token."""
    k = np.arange(num_steps)
    chunk, i = k // per_chunk, k % per_chunk
    start = chunk * chunk_frames + 8 * i
    end = np.minimum(start + 8, (chunk + 1) * chunk_frames)
    return np.stack([start, end], axis=1) / 100.0


def forced_path(log_probs: np.ndarray, targets: list[int], blank: int) -> np.ndarray:
    """The most likely CTC path through ``targets``: for each encoder step, the index of the
    target it emits, or -1 for a blank.

    Args:
        log_probs: ``[T, C]`` log-probabilities (blank included).
        targets: token ids, at least one.
        blank: the blank class.

    Raises:
        AlignmentError: ``T`` is too short to emit every target.
    """
    T, L = log_probs.shape[0], len(targets)
    repeats = sum(a == b for a, b in zip(targets, targets[1:], strict=False))
    if L == 0 or T < L + repeats:
        raise AlignmentError(
            f"the transcript has {L} tokens but the audio only {T} steps of 80 ms; "
            "it is too long for this audio"
        )
    S = 2 * L + 1
    labels = np.full(S, blank)
    labels[1::2] = targets
    # A label may skip the blank before it unless it repeats the previous label.
    skip = np.zeros(S, dtype=bool)
    skip[3::2] = labels[3::2] != labels[1:-2:2]
    score = np.full(S, -np.inf)
    score[:2] = log_probs[0, labels[:2]]
    back = np.zeros((T, S), dtype=np.int8)  # 0: stay, 1: from s-1, 2: from s-2
    for t in range(1, T):
        stay, prev = score, np.concatenate(([-np.inf], score[:-1]))
        prev2 = np.where(skip, np.concatenate(([-np.inf, -np.inf], score[:-2])), -np.inf)
        choices = np.stack([stay, prev, prev2])
        back[t] = np.argmax(choices, axis=0)
        score = choices[back[t], np.arange(S)] + log_probs[t, labels]
    s = S - 1 if score[S - 1] >= score[S - 2] else S - 2
    if not np.isfinite(score[s]):
        raise AlignmentError("the transcript cannot be aligned to this audio")
    path = np.empty(T, dtype=np.int64)
    for t in range(T - 1, -1, -1):
        path[t] = (s - 1) // 2 if s % 2 else -1
        s -= int(back[t, s])
    return path


def align(
    log_probs: np.ndarray,
    targets: list[int],
    pieces: list[str],
    blank: int,
    word_starts: list[bool],
    offset: float = 0.0,
    check: bool = True,
) -> Alignment:
    """Place ``targets`` (whose texts are ``pieces``) in time and group them into words.

    Args:
        log_probs: ``[T, C]`` CTC log-probabilities of one audio's encoder tokens.
        targets: the transcript's token ids.
        pieces: each target's text; a word's text is the concatenation of its pieces.
        blank: the blank class.
        word_starts: True where a target begins a new word.
        offset: seconds added to every time (the start of a segment in a longer file).
        check: refuse a transcript whose forced path is far less likely than the best one.

    Raises:
        AlignmentError: the transcript is too long for the audio or does not match it.
    """
    path = forced_path(log_probs, targets, blank)
    T = log_probs.shape[0]
    labels = np.where(path >= 0, np.asarray(targets)[np.maximum(path, 0)], blank)
    forced = float(log_probs[np.arange(T), labels].sum())
    best = float(log_probs.max(axis=1).sum())
    gap = (best - forced) / T
    if check and gap > MISMATCH_NATS:
        raise AlignmentError(
            f"the transcript does not match the audio (alignment gap {gap:.2f} nats per "
            f"80 ms step, limit {MISMATCH_NATS}); check the text and the language"
        )
    times = step_times(T) + offset
    probs = np.exp(log_probs[np.arange(T), labels])
    tokens = []
    for j, text in enumerate(pieces):
        steps = np.flatnonzero(path == j)
        tokens.append(
            TimedSpan(
                text,
                float(times[steps[0], 0]),
                float(times[steps[-1], 1]),
                float(probs[steps].mean()),
            )
        )
    words: list[TimedSpan] = []
    group: list[TimedSpan] = []
    for token, starts in zip(tokens, word_starts, strict=True):
        if starts and group:
            words.append(_merge(group))
            group = []
        group.append(token)
    if group:
        words.append(_merge(group))
    return Alignment(tuple(w for w in words if w.text), tuple(tokens), gap)


def _merge(group: list[TimedSpan]) -> TimedSpan:
    text = "".join(t.text for t in group).strip()
    score = float(np.mean([t.score for t in group]))
    return TimedSpan(text, group[0].start, group[-1].end, score)


def is_unspaced(char: str) -> bool:
    """Whether ``char`` belongs to a script written without spaces between words (Han, kana,
    Thai, Lao, Khmer, Myanmar, Tibetan): there each character is a word for timestamps."""
    o = ord(char)
    return (
        0x3040 <= o <= 0x30FF
        or 0x3400 <= o <= 0x9FFF
        or 0xF900 <= o <= 0xFAFF
        or 0x0E00 <= o <= 0x0EFF
        or 0x0F00 <= o <= 0x0FFF
        or 0x1000 <= o <= 0x109F
        or 0x1780 <= o <= 0x17FF
    )


def token_pieces(tokenizer, ids: list[int]) -> tuple[list[str], list[bool]]:
    """Each token's text and whether it starts a word, for a byte-level BPE.

    Byte-level tokens may hold part of a character; a token's text is what it adds to the
    decoded prefix, so concatenating pieces gives the text. A word starts at a token whose
    text begins with whitespace, and at every character of unspaced scripts.
    """
    pieces: list[str] = []
    starts: list[bool] = []
    done, first = "", 0  # decoded so far; first token of the character being completed
    for n in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:n])
        pieces.append("")
        starts.append(False)
        if text.endswith("\ufffd"):  # a character split across tokens: wait for the rest
            continue
        piece = text[len(done) :]
        done = text
        pieces[first] = piece  # the character's text goes to its first token
        starts[first] = first == 0 or piece[:1].isspace() or is_unspaced(piece[:1] or " ")
        first = n
    return pieces, starts
