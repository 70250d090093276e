"""Batches of TTS training sequences drawn from a :class:`~omnispeech.training.tts_data.CodeCache`.

Each batch holds utterances of similar length (little padding), arranged by
:mod:`omnispeech.training.tts_batch` in the released dual track or the single stream.

**In-context references** (``data.in_context``): each drawn utterance gets, with that
probability, a reference: another utterance of the cache with the same speaker (the manifest's
``speaker`` field) and language, uniformly among them. Utterances with no such partner (no
speaker, or the only one of their speaker in their language) never get one, so the share of
sequences with a reference is ``in_context`` times the share of utterances with a partner
(:attr:`TTSBatcher.with_partner`). A reference's positions count towards ``batch_frames`` (its
text, its frames and one more, an upper bound in both arrangements), so that bound still holds
for the whole sequence.

**Speaker vectors from other clips** (``data.speaker_other_clip``): at inference the voice's
x-vector comes from a clip other than the speech the talker makes. With that probability, an
utterance without an in-context reference takes the x-vector of another utterance of its
speaker and language (drawn as a reference would be), so the talker learns the voice from what
all clips of a speaker share rather than from what one clip holds (its pitch contour, its pace).
0 draws nothing and leaves the batches exactly as before.

**Unconditioned utterances** (``data.guidance_dropout``): with that probability an utterance is
arranged without its text (each target text token reads ``tts_pad``) and with a zero speaker
vector, so that the talker also learns what speech follows from the speech alone: the
unconditional branch that classifier-free guidance sharpens the text and the voice against at
inference. A reference, when drawn, stays. 0 draws nothing.

A batch depends only on (seed, step, rank), as for ASR: a resumed run draws the very batches an
uninterrupted one would. Every random choice (utterances, references, arrangements) comes from
the one generator seeded with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from omnispeech.interleave import (
    SingleStreamPolicy,
    build_reference_stream,
    build_single_stream,
)
from omnispeech.talker import TalkerTokens
from omnispeech.training.tts_batch import (
    IGNORE,
    NONE,
    Reference,
    TTSBatch,
    arrange,
    arrange_single,
)
from omnispeech.training.tts_data import CodeCache


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
        in_context: share of drawn utterances given an in-context reference (see the module
            docstring); 0 draws none and leaves the batches exactly as without references.
        other_clip: share of the utterances without a reference whose speaker vector comes
            from another clip of their speaker (see the module docstring).
        guidance_dropout: share of utterances arranged unconditioned (see the module
            docstring); single stream only.
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
        in_context: float = 0.0,
        other_clip: float = 0.0,
        guidance_dropout: float = 0.0,
    ) -> None:
        if guidance_dropout > 0 and single is None:
            raise ValueError("guidance_dropout needs the single stream")
        self.guidance_dropout = guidance_dropout
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

        # In-context partners: the utterances that may serve as a reference, by (speaker,
        # language); a reference must have text and, in the single stream, fit its own stream.
        self.in_context = in_context
        self.other_clip = other_clip
        self._groups: dict[tuple[str, str], list[int]] = {}
        if in_context > 0 or other_clip > 0:
            for i in self.usable:
                u = cache.utterances[i]
                if u.speaker and (single is None or self._fits_reference(i, single)):
                    self._groups.setdefault((u.speaker, u.language), []).append(i)
        self._slot = {i: k for group in self._groups.values() for k, i in enumerate(group)}
        self.with_partner = sum(self._partners(i) > 0 for i in self.usable)

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

    def _fits_reference(self, index: int, policy: SingleStreamPolicy) -> bool:
        text = self.text_ids[index]
        assert text is not None
        try:
            build_reference_stream(text, self.cache.utterances[index].frames, policy)
        except ValueError:
            return False
        return True

    def _partners(self, index: int) -> int:
        """How many utterances could be the reference of utterance ``index``."""
        u = self.cache.utterances[index]
        group = self._groups.get((u.speaker, u.language), ())
        return len(group) - (index in self._slot)

    def reference(self, index: int, rng: np.random.Generator) -> int | None:
        """Draw whether utterance ``index`` gets an in-context reference, and which (an index
        into the cache: same speaker and language, never itself); None for none."""
        if self.in_context <= 0 or rng.random() >= self.in_context:
            return None
        return self._partner(index, rng)

    def _partner(self, index: int, rng: np.random.Generator) -> int | None:
        """Another utterance of the speaker and language of ``index``, uniformly; None for
        none."""
        count = self._partners(index)
        if count <= 0:
            return None
        u = self.cache.utterances[index]
        group = self._groups[(u.speaker, u.language)]
        k = int(rng.integers(count))
        own = self._slot.get(index)
        if own is not None and k >= own:
            k += 1  # skip the utterance itself
        return group[k]

    def positions(self, index: int, reference: int | None = None) -> int:
        """Talker positions of utterance ``index`` at most, with its reference if any."""
        if reference is None:
            return self.cost[index]
        text = self.text_ids[reference]
        assert text is not None
        return self.cost[index] + len(text) + self.cache.utterances[reference].frames + 1

    def __len__(self) -> int:
        """Utterances batches are drawn from."""
        return len(self.usable)

    def pick(
        self, seed: int, step: int, rank: int
    ) -> tuple[list[int], list[int | None], np.random.Generator]:
        """The utterances of ``rank``'s batch at ``step``, their in-context references (None
        for none) and the generator for the rest.

        Candidates are drawn at random (with their references), sorted by length, and a
        random run of neighbours that fills ``batch_positions`` is kept: little padding, every
        utterance equally likely.
        """
        rng = np.random.default_rng([seed, step, rank])
        pool = [self.usable[i] for i in rng.integers(len(self), size=4 * self.max_batch)]
        refs = [self.reference(i, rng) for i in pool]
        cost = [self.positions(i, r) for i, r in zip(pool, refs, strict=True)]
        # A stable sort of the pool's places: without references, the order of sorting the
        # utterances themselves by length, so such runs draw the batches they always drew.
        ordered = sorted(range(len(pool)), key=lambda p: cost[p])
        start = int(rng.integers(len(ordered)))
        chosen: list[int] = []
        longest = 0
        for p in ordered[start:] + ordered[:start][::-1]:
            longest2 = max(longest, cost[p])
            if len(chosen) >= self.max_batch or (
                chosen and longest2 * (len(chosen) + 1) > self.batch_positions
            ):
                break
            chosen.append(p)
            longest = longest2
        return [pool[p] for p in chosen], [refs[p] for p in chosen], rng

    def batch(self, seed: int, step: int, rank: int) -> TTSBatch:
        """The batch of process ``rank`` at ``step`` of a run seeded with ``seed``."""
        chosen, refs, rng = self.pick(seed, step, rank)
        return self.make(chosen, rng, refs)

    def make(
        self,
        chosen: Sequence[int],
        rng: np.random.Generator,
        references: Sequence[int | None] | None = None,
    ) -> TTSBatch:
        """Arrange and pad the utterances ``chosen`` (indices into the cache) with their
        in-context ``references`` (indices, None for none; not given: drawn from ``rng``);
        ``rng`` draws each one's text arrangement and whether it gets the "auto" language
        prefix."""
        if references is None:
            references = [self.reference(i, rng) for i in chosen]
        seqs = []
        speaker = self.cache.speakers is not None
        dropped = []  # rows arranged unconditioned
        for b, (i, r) in enumerate(zip(chosen, references, strict=True)):
            u = self.cache.utterances[i]
            mode = self.text_modes[int(rng.integers(len(self.text_modes)))]
            auto = bool(rng.random() < self.auto_language)
            tag = None if auto else self.language_tags.get(u.language)
            codes = self.cache.codes_of(i)
            text = self.text_ids[i]
            assert text is not None  # only usable utterances are drawn
            ref = None
            if r is not None:
                ref_text = self.text_ids[r]
                assert ref_text is not None  # only usable utterances are references
                ref = Reference(ref_text, self.cache.codes_of(r))
            parts = (text, codes, self.ids, self.role_ids, tag, speaker)
            if self.single is not None:
                blank = self.guidance_dropout > 0 and rng.random() < self.guidance_dropout
                if blank:
                    dropped.append(b)
                align = self.alignment(i)
                seqs.append(arrange_single(*parts, self.single, align, ref, blank))
            else:
                seqs.append(arrange(*parts, mode, ref))
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
        # The speaker slot holds the x-vector of the clip the voice comes from: the reference's.
        rows = [i if r is None else r for i, r in zip(chosen, references, strict=True)]
        if speaker and self.other_clip > 0:  # drawn last: the arrangements stay as they were
            for b, (i, r) in enumerate(zip(chosen, references, strict=True)):
                if r is None and rng.random() < self.other_clip:
                    other = self._partner(i, rng)
                    rows[b] = i if other is None else other
        speakers = self.cache.speakers[rows] if speaker else None
        if speakers is not None and dropped:
            speakers[dropped] = 0.0  # the unconditioned voice: no speaker vector
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
