"""Teacher-forced talker sequences in the released dual-track arrangement, batched.

Every talker position sums a text-track item and a codec-track item. One utterance with text
tokens ``t_0..t_{n-1}`` and codes ``c`` ``[K, N]`` becomes, position by position:

1. the role header ``<|im_start|>assistant\\n``: text track only (3 positions);
2. the control prefix: codec ``[think, think_bos, language, think_eos]`` (or ``[nothink,
   think_bos, think_eos]`` for "auto"), the speaker slot (the x-vector, when the model has a
   speaker encoder), ``codec_pad``; text ``tts_pad ... tts_pad, tts_bos``;
3. the stream of :func:`~omnispeech.interleave.build_training_stream` under the released
   policy (``stream``: one text item beside each frame from frame 0 on; ``full``: the whole
   text and ``tts_eos`` over ``codec_pad`` first): a lead-in position has codec ``codec_pad``;
   the position producing frame ``f`` has ``codec_bos`` (``f = 0``) or frame ``f - 1`` (the sum
   of its K code embeddings) and is trained to give ``c[0, f]``;
4. one last position, ``tts_pad`` + frame ``N - 1``, trained to give ``codec_eos``.

This is exactly the prompt :func:`~omnispeech.pipelines.tts_prompt.build_prompt` builds at
inference followed by the positions the generation loop appends, so the exported model runs in
``TTS`` unchanged.

The single stream (ARIA, :func:`arrange_single`) keeps items 1-2 and replaces 3-4 by the
positions of :func:`~omnispeech.interleave.build_single_stream`: a text position is its item
(token or ``tts_eos``) + ``codec_pad``; the speech position of frame ``f`` is ``tts_pad`` + frame
``f`` (the sum of its K code embeddings). Frame ``f`` is predicted at the position just before
its speech position, and ``codec_eos`` at the last position; text positions that follow other
positions carry no target (text comes from outside, the talker never predicts it).

A batch depends only on (seed, step, rank), as for ASR: a resumed run draws the very batches an
uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from omnispeech.interleave import (
    ItemKind,
    RatePolicy,
    SingleStreamPolicy,
    TextItem,
    build_single_stream,
    build_training_stream,
)
from omnispeech.talker import TalkerTokens
from omnispeech.training.tts_data import CodeCache

IGNORE = -100  # no loss at this position (cross-entropy's ignore_index)
NONE = -1  # no codec-track item here (the role header; the speaker slot takes the x-vector)


@dataclasses.dataclass
class TTSBatch:
    """Right-padded talker sequences (causal attention never looks at the padding).

    Attributes:
        text_ids: ``[B, L]`` text-track token ids (``tts_pad`` in the padding).
        codec_ids: ``[B, L, K]`` codec-track items: column 0 a talker id (code of codebook 0 or
            a control id), columns 1..K-1 the residual codes of the same frame; ``-1`` where
            there is none (the position's codec vector is the sum of the present ones).
        speaker_mask: ``[B, L]`` True at the speaker slot.
        speakers: ``[B, hidden]`` x-vectors, or None for a model without a speaker slot.
        labels: ``[B, L]`` codebook-0 code or ``codec_eos`` to predict, ``-100`` elsewhere.
        frame_index: ``[M]`` flat index ``b * L + position`` of the position producing each
            frame of the batch (where the code predictor reads the talker's hidden state).
        frame_codes: ``[M, K]`` the codes of those frames.
        frames: total codec frames in the batch (the unit of data throughput).
    """

    text_ids: torch.Tensor
    codec_ids: torch.Tensor
    speaker_mask: torch.Tensor
    speakers: torch.Tensor | None
    labels: torch.Tensor
    frame_index: torch.Tensor
    frame_codes: torch.Tensor
    frames: int

    def to(self, device: torch.device) -> TTSBatch:
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)


@dataclasses.dataclass
class _Sequence:
    text: list[int]
    codec: list[list[int]]
    labels: list[int]
    speaker_at: int
    frame_at: list[int]  # position whose hidden state predicts frame f, for f in 0..N-1

    def add(self, text: int, codec: list[int], label: int = IGNORE) -> None:
        self.text.append(text)
        self.codec.append(codec)
        self.labels.append(label)


def arrange(  # noqa: PLR0913 - one utterance's parts and the arrangement's choices
    text_ids: Sequence[int],
    codes: torch.Tensor,
    ids: TalkerTokens,
    role_ids: Sequence[int],
    language_tag: int | None,
    speaker: bool,
    mode: str,
) -> _Sequence:
    """One utterance as talker positions (items 1-4 of the module docstring).

    Args:
        text_ids: the transcript's token ids.
        codes: ``[K, N]`` its codec codes, ``N >= 1``.
        ids: the talker's special ids.
        role_ids: ids of ``<|im_start|>assistant\\n``.
        language_tag: the codec language tag, None for the "auto" prefix.
        speaker: whether the control prefix has a speaker slot.
        mode: ``stream`` or ``full`` (the released text arrangements).
    """
    K, N = codes.shape
    seq = _prefix(K, ids, role_ids, language_tag, speaker)
    none = [NONE] * K
    policy = RatePolicy.released(streaming_text=mode == "stream")
    frame_lists = codes.T.tolist()  # [N][K]
    for pos in build_training_stream(text_ids, N, policy):
        text = _text_id(pos.text, ids)
        if pos.frame is None:
            seq.add(text, [ids.codec_pad] + none[1:])
            continue
        f = pos.frame
        seq.frame_at.append(len(seq.text))
        codec = [ids.codec_bos] + none[1:] if f == 0 else frame_lists[f - 1]
        seq.add(text, codec, frame_lists[f][0])
    seq.add(ids.tts_pad, frame_lists[N - 1], ids.codec_eos)
    return seq


def arrange_single(  # noqa: PLR0913 - one utterance's parts and the arrangement's choices
    text_ids: Sequence[int],
    codes: torch.Tensor,
    ids: TalkerTokens,
    role_ids: Sequence[int],
    language_tag: int | None,
    speaker: bool,
    policy: SingleStreamPolicy,
    alignment: Sequence[int] | None = None,
) -> _Sequence:
    """One utterance as talker positions in the single stream (see the module docstring).

    Arguments as for :func:`arrange`, with the single-stream ``policy`` instead of a mode,
    and optionally the first frame of each text token (``n`` entries, non-decreasing, in
    ``[0, N)``) that the durations follow; None spreads them evenly.

    Raises:
        ValueError: the text does not fit in the frames under ``policy``'s bounds.
    """
    K, N = codes.shape
    seq = _prefix(K, ids, role_ids, language_tag, speaker)
    none = [NONE] * K
    frame_lists = codes.T.tolist()  # [N][K]
    for pos in build_single_stream(text_ids, N, policy, alignment).positions:
        if pos.frame is None:
            assert pos.text is not None
            seq.add(_text_id(pos.text, ids), [ids.codec_pad] + none[1:])
            continue
        f = pos.frame
        # The position before reads everything up to here and predicts this frame.
        seq.labels[-1] = frame_lists[f][0]
        seq.frame_at.append(len(seq.text) - 1)
        seq.add(ids.tts_pad, frame_lists[f])
    seq.labels[-1] = ids.codec_eos
    return seq


def _prefix(
    K: int, ids: TalkerTokens, role_ids: Sequence[int], language_tag: int | None, speaker: bool
) -> _Sequence:
    """Role header and control prefix (items 1-2 of the module docstring)."""
    none = [NONE] * K
    seq = _Sequence([], [], [], -1, [])
    for r in role_ids:
        seq.add(r, none)
    control = (
        [ids.codec_nothink, ids.codec_think_bos, ids.codec_think_eos]
        if language_tag is None
        else [ids.codec_think, ids.codec_think_bos, language_tag, ids.codec_think_eos]
    )
    for c in control:
        seq.add(ids.tts_pad, [c] + none[1:])
    if speaker:
        seq.speaker_at = len(seq.text)
        seq.add(ids.tts_pad, none)
    seq.add(ids.tts_bos, [ids.codec_pad] + none[1:])
    return seq


def _text_id(item: TextItem, ids: TalkerTokens) -> int:
    """The text-track token id of an item: the token, ``tts_eos`` or ``tts_pad``."""
    if item.kind is ItemKind.TOKEN:
        return item.token
    return ids.tts_eos if item.kind is ItemKind.TEXT_END else ids.tts_pad


class TTSBatcher:
    """Draws batches of utterances of similar length from a :class:`CodeCache`.

    Args:
        cache: the cached codes (and x-vectors) of the set.
        text_ids: per utterance of the cache, its text-track ids (from the run's text front
            end), or None for an utterance that has none (it is left out).
        role_ids: ids of the role header (``<|im_start|>assistant\\n`` for BPE).
        ids: the talker's special ids.
        language_tags: ISO 639 code -> codec language tag.
        text_modes: the arrangements drawn per utterance (``stream``, ``full``).
        auto_language: share of utterances given the "auto" prefix instead of their tag.
        batch_positions: talker positions per batch (a batch holds at least one utterance).
        max_batch: utterances per batch at most.
        single: train the single stream under this policy instead of the dual track (then
            ``text_modes`` is not used); utterances whose text does not fit are left out
            (:attr:`unfit` counts them).
        alignments: single stream only: per utterance, the first frame of each text token
            (None: durations spread evenly), see :func:`build_single_stream`.
    """

    def __init__(  # noqa: PLR0913 - each argument is one independent setting
        self,
        cache: CodeCache,
        text_ids: Sequence[Sequence[int] | None],
        role_ids: Sequence[int],
        ids: TalkerTokens,
        language_tags: Mapping[str, int],
        text_modes: Sequence[str],
        auto_language: float,
        batch_positions: int,
        max_batch: int,
        single: SingleStreamPolicy | None = None,
        alignments: Sequence[Sequence[int] | None] | None = None,
    ) -> None:
        self.cache = cache
        self.ids = ids
        self.language_tags = dict(language_tags)
        self.text_modes = list(text_modes)
        self.auto_language = auto_language
        self.batch_positions = batch_positions
        self.max_batch = max_batch
        self.single = single
        self.role_ids = list(role_ids)
        if len(text_ids) != len(cache.utterances):
            raise ValueError(f"{len(text_ids)} texts for {len(cache.utterances)} utterances")
        self.text_ids = [None if t is None else list(t) for t in text_ids]
        self.alignments = list(alignments) if alignments is not None else None
        # Positions of each utterance: prompt (about 10) + text lead-in at most + frames + end.
        self.cost = [
            len(self.role_ids) + 7 + len(t or ()) + u.frames + 1
            for t, u in zip(self.text_ids, cache.utterances, strict=True)
        ]

        # The utterances batches are drawn from (indices into the cache).
        self.usable = [i for i, t in enumerate(self.text_ids) if t is not None]
        self.no_text = len(cache.utterances) - len(self.usable)
        if single is not None:
            self.usable = [i for i in self.usable if self._fits(i, single)]
        self.unfit = len(cache.utterances) - self.no_text - len(self.usable)

    def alignment(self, index: int) -> list[int] | None:
        """The first frame of each text token of utterance ``index`` (single stream), or
        None for evenly spread durations."""
        if self.single is None or self.alignments is None:
            return None
        a = self.alignments[index]
        return None if a is None else list(a)

    def _fits(self, index: int, policy: SingleStreamPolicy) -> bool:
        text = self.text_ids[index]
        assert text is not None
        frames = self.cache.utterances[index].frames
        try:
            build_single_stream(text, frames, policy, self.alignment(index))
        except ValueError:
            return False
        return True

    def __len__(self) -> int:
        """Utterances batches are drawn from."""
        return len(self.usable)

    def pick(self, seed: int, step: int, rank: int) -> tuple[list[int], np.random.Generator]:
        """The utterances of ``rank``'s batch at ``step`` and the generator for the rest.

        Candidates are drawn at random, sorted by length, and a random run of neighbours that
        fills ``batch_positions`` is kept: little padding, every utterance equally likely.
        """
        rng = np.random.default_rng([seed, step, rank])
        pool = [self.usable[i] for i in rng.integers(len(self), size=4 * self.max_batch)]
        ordered = sorted(pool, key=lambda i: self.cost[i])
        start = int(rng.integers(len(ordered)))
        chosen: list[int] = []
        longest = 0
        for i in ordered[start:] + ordered[:start][::-1]:
            longest2 = max(longest, self.cost[i])
            if len(chosen) >= self.max_batch or (
                chosen and longest2 * (len(chosen) + 1) > self.batch_positions
            ):
                break
            chosen.append(i)
            longest = longest2
        return chosen, rng

    def batch(self, seed: int, step: int, rank: int) -> TTSBatch:
        """The batch of process ``rank`` at ``step`` of a run seeded with ``seed``."""
        chosen, rng = self.pick(seed, step, rank)
        return self.make(chosen, rng)

    def make(self, chosen: Sequence[int], rng: np.random.Generator) -> TTSBatch:
        """Arrange and pad the utterances ``chosen`` (indices into the cache); ``rng`` draws
        each one's text arrangement and whether it gets the "auto" language prefix."""
        seqs = []
        speaker = self.cache.speakers is not None
        for i in chosen:
            u = self.cache.utterances[i]
            mode = self.text_modes[int(rng.integers(len(self.text_modes)))]
            auto = bool(rng.random() < self.auto_language)
            tag = None if auto else self.language_tags.get(u.language)
            codes = self.cache.codes_of(i)
            text = self.text_ids[i]
            assert text is not None  # only usable utterances are drawn
            parts = (text, codes, self.ids, self.role_ids, tag, speaker)
            if self.single is not None:
                seqs.append(arrange_single(*parts, self.single, self.alignment(i)))
            else:
                seqs.append(arrange(*parts, mode))
        B, L = len(seqs), max(len(s.text) for s in seqs)
        K = self.cache.codes.shape[0]
        text_ids = torch.full((B, L), self.ids.tts_pad, dtype=torch.long)
        codec_ids = torch.full((B, L, K), NONE, dtype=torch.long)
        labels = torch.full((B, L), IGNORE, dtype=torch.long)
        speaker_mask = torch.zeros(B, L, dtype=torch.bool)
        frame_index, frame_codes = [], []
        for b, (i, s) in enumerate(zip(chosen, seqs, strict=True)):
            n = len(s.text)
            text_ids[b, :n] = torch.tensor(s.text)
            codec_ids[b, :n] = torch.tensor(s.codec)
            labels[b, :n] = torch.tensor(s.labels)
            if s.speaker_at >= 0:
                speaker_mask[b, s.speaker_at] = True
            frame_index.append(torch.tensor(s.frame_at) + b * L)
            frame_codes.append(self.cache.codes_of(i).T)
        speakers = self.cache.speakers[list(chosen)] if speaker else None
        return TTSBatch(
            text_ids=text_ids,
            codec_ids=codec_ids,
            speaker_mask=speaker_mask,
            speakers=speakers,
            labels=labels,
            frame_index=torch.cat(frame_index),
            frame_codes=torch.cat(frame_codes),
            frames=sum(self.cache.utterances[i].frames for i in chosen),
        )
