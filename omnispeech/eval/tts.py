"""Synthesised speech scored against a manifest's reference recordings.

For each manifest utterance, the synthesised audio of its text is compared with the recorded
reference:

* **intelligibility**: a recogniser transcribes the synthesised audio; CER / WER against the
  manifest's text, and the share of words skipped (deletions) and added (insertions, e.g.
  repeated words). English may go to an independent judge (PocketSphinx, which never saw
  the training voices); other languages to an ASR model, whose scores are marked as not
  independent when it learnt from the same voices (optional: only with a recogniser);
* **speaker similarity**: cosine similarity of speaker embeddings of the synthesised audio and
  the reference recording (:mod:`omnispeech.eval.speaker`), and for contrast its mean
  similarity to the references of the other speakers in the selection: the margin between
  the two says whether the voice was cloned rather than merely "a voice";
* **duration ratio**: synthesised seconds over reference seconds (1 = the same pace).

Synthesised audio is found in a folder, by the reference's path relative to the manifest
(``clips/0001.wav`` -> ``DIR/clips/0001.wav``) or else by its file name (``DIR/0001.wav``),
with any of the extensions .wav, .flac, .ogg; or it is given as (synthesised, reference) pairs.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omnispeech.audio import audio_duration
from omnispeech.errors import InputError
from omnispeech.eval.asr import ManifestEntry, Transcriber, read_manifest
from omnispeech.eval.report import PerLanguageReport, format_table, language_rows
from omnispeech.eval.speaker import SpeakerEncoder, cosine_similarity, default_speaker_encoder
from omnispeech.eval.text import EditCounts, Metric, edit_counts, primary_metric

_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclasses.dataclass(frozen=True)
class TTSUtterance:
    """The scores of one synthesised utterance.

    Attributes:
        path: the synthesised audio file.
        reference: the reference recording.
        language: the manifest's language code.
        speaker: the manifest's speaker id.
        duration_ratio: synthesised seconds / reference seconds.
        speaker_similarity: cosine similarity to the reference voice (None: not measured).
        hypothesis: the ASR transcript of the synthesised audio (None: no ASR model).
        counts: its edits against the manifest's text (None: no ASR model).
        other_similarity: mean cosine similarity to the other speakers' references (None: not
            measured, or no other speaker in the selection).
        judge: who transcribed it (``"pocketsphinx"``, ``"asr"``; empty: nobody).
    """

    path: str
    reference: str
    language: str
    speaker: str
    duration_ratio: float
    speaker_similarity: float | None = None
    hypothesis: str | None = None
    counts: EditCounts | None = None
    other_similarity: float | None = None
    judge: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out: dict[str, Any] = {
            "path": self.path,
            "reference": self.reference,
            "language": self.language,
            "speaker": self.speaker,
            "duration_ratio": round(self.duration_ratio, 6),
            "speaker_similarity": _round(self.speaker_similarity),
            "other_similarity": _round(self.other_similarity),
        }
        if self.counts is not None:
            out |= {
                "judge": self.judge,
                "hypothesis": self.hypothesis,
                "cer": _round(self.counts.cer),
                "wer": _round(self.counts.wer),
                "skipped": _round(self.counts.deletion_rate),
                "inserted": _round(self.counts.insertion_rate),
            }
        return out


def _round(x: float | None) -> float | None:
    """JSON has no NaN: undefined values are written as null."""
    return None if x is None or math.isnan(x) else round(x, 6)


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


@dataclasses.dataclass(frozen=True)
class TTSGroupScore:
    """Means over one language (or over everything, ``language="all"``).

    Attributes:
        language: code, "" for utterances without one, or "all".
        utterances: number scored.
        speaker_similarity: mean cosine similarity (None: not measured).
        duration_ratio: mean synthesised / reference duration.
        cer: corpus-level CER of the ASR transcripts (None: no ASR model).
        wer: corpus-level WER (None: no ASR model).
        metric: the primary intelligibility metric (``"cer"`` or ``"wer"``).
        other_similarity: mean similarity to other speakers' references (None: not measured).
        skipped: reference words left out per reference word (None: no recogniser).
        inserted: words added per reference word (None: no recogniser).
        judge: the recognisers that scored this group, joined with "+" (empty: none).
    """

    language: str
    utterances: int
    speaker_similarity: float | None
    duration_ratio: float
    cer: float | None
    wer: float | None
    metric: Metric
    other_similarity: float | None = None
    skipped: float | None = None
    inserted: float | None = None
    judge: str = ""

    @property
    def similarity_margin(self) -> float | None:
        """SIM(reference) - SIM(other voices): how much closer to the cloned voice than to
        any voice (None: not measured)."""
        if self.speaker_similarity is None or self.other_similarity is None:
            return None
        return self.speaker_similarity - self.other_similarity

    @classmethod
    def of(cls, language: str, items: Sequence[TTSUtterance], metric: Metric) -> TTSGroupScore:
        """Aggregate ``items``."""
        counts = [u.counts for u in items if u.counts is not None]
        total = EditCounts.total(counts) if counts else None
        return cls(
            language,
            len(items),
            _mean([u.speaker_similarity for u in items]),
            sum(u.duration_ratio for u in items) / len(items),
            None if total is None else total.cer,
            None if total is None else total.wer,
            metric,
            _mean([u.other_similarity for u in items]),
            None if total is None else total.deletion_rate,
            None if total is None else total.insertion_rate,
            "+".join(sorted({u.judge for u in items if u.judge})),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "utterances": self.utterances,
            "speaker_similarity": _round(self.speaker_similarity),
            "other_similarity": _round(self.other_similarity),
            "similarity_margin": _round(self.similarity_margin),
            "duration_ratio": _round(self.duration_ratio),
            "cer": _round(self.cer),
            "wer": _round(self.wer),
            "skipped": _round(self.skipped),
            "inserted": _round(self.inserted),
            "judge": self.judge,
            "metric": self.metric,
        }


@dataclasses.dataclass(frozen=True)
class TTSScore(PerLanguageReport):
    """Synthesised speech against a manifest.

    Attributes:
        per_language: ``{language code: TTSGroupScore}``, sorted by code.
        overall: all utterances pooled.
        utterances: every utterance's scores, in manifest order.
        split: the split evaluated (None: every line).
    """

    per_language: dict[str, TTSGroupScore]
    overall: TTSGroupScore
    utterances: tuple[TTSUtterance, ...]
    split: str | None = None

    task = "tts"

    def to_markdown(self, title: str = "TTS evaluation") -> str:
        """A markdown report: one table row per language plus the overall row."""
        columns = (
            "utterances",
            "speaker_similarity",
            "other_similarity",
            "duration_ratio",
            "cer",
            "wer",
            "skipped",
            "inserted",
            "judge",
            "metric",
        )
        rows = language_rows(
            {k: v.to_dict() for k, v in self.per_language.items()},
            self.overall.to_dict(),
            columns,
        )
        head = (
            f"## {title}\n\nSplit: {self.split or 'all'}. Speaker similarity: cosine to the "
            "reference recording (1 = same voice); other voices: mean cosine to the other "
            "speakers' references. Duration ratio: synthesised / reference. CER / WER: the "
            "judge's transcript of the synthesised audio (primary metric in **bold**); skipped "
            "/ inserted: word deletions / insertions per reference word. Judge `asr` is not "
            "independent when the recogniser learnt from the same voices.\n\n"
        )
        headers = ["language", "utterances", "speaker sim.", "other voices", "duration ratio"]
        headers += ["CER", "WER", "skipped", "inserted", "judge"]
        return head + format_table([*headers, "primary"], rows)


def _find(folder: Path, entry: ManifestEntry, root: Path) -> Path | None:
    """The synthesised file of ``entry`` in ``folder``: mirrored relative path, then name."""
    relative = Path(os.path.relpath(entry.path, root))
    candidates = []
    if not relative.is_absolute() and ".." not in relative.parts:
        candidates += [folder / relative.with_suffix(s) for s in _SUFFIXES]
    candidates += [folder / (entry.path.stem + s) for s in _SUFFIXES]
    return next((c for c in candidates if c.is_file()), None)


def _pair_up(
    synthesized: str | Path | Sequence[tuple[str | Path, str | Path]],
    entries: list[ManifestEntry],
    manifest: Path,
) -> list[tuple[Path, ManifestEntry]]:
    """(synthesised file, manifest entry) pairs, refusing anything unmatched."""
    if isinstance(synthesized, str | Path):
        folder = Path(synthesized)
        if not folder.is_dir():
            raise InputError(f"synthesised audio folder not found: {folder}")
        root = manifest.resolve().parent
        found = [(_find(folder, e, root), e) for e in entries]
        missing = [e for path, e in found if path is None]
        if missing:
            raise InputError(
                f"{len(missing)} of {len(entries)} utterances have no synthesised audio in "
                f"{folder} (first: {missing[0].path.name}, manifest line {missing[0].line})"
            )
        return [(path, e) for path, e in found if path is not None]
    by_path = {e.path.resolve(): e for e in entries}
    pairs = []
    for synth, reference in synthesized:
        entry = by_path.get(Path(reference).resolve())
        if entry is None:
            raise InputError(f"{reference}: not a reference of the selected manifest utterances")
        pairs.append((Path(synth), entry))
    if not pairs:
        raise InputError("no (synthesised, reference) pairs to evaluate")
    return pairs


def evaluate_tts(  # noqa: PLR0913 - the selection options mirror evaluate_asr's
    synthesized: str | Path | Sequence[tuple[str | Path, str | Path]],
    manifest: str | Path,
    split: str | None = "test",
    asr: Transcriber | None = None,
    speaker_encoder: SpeakerEncoder | None = None,
    similarity: bool = True,
    languages: Sequence[str] | None = None,
    limit: int | None = None,
    judges: Mapping[str, tuple[str, Transcriber]] | None = None,
) -> TTSScore:
    """Score synthesised audio against a manifest's references.

    Args:
        synthesized: a folder of synthesised files (named as described in the module
            docstring), or ``(synthesised file, reference file)`` pairs whose reference is a
            manifest ``path`` (as a file path, i.e. resolved against the manifest's folder).
        manifest: the JSONL manifest (see :mod:`omnispeech.eval.asr`).
        split: evaluate this split (None: every line).
        asr: a model to measure intelligibility with (None: no CER / WER), for the languages
            ``judges`` does not cover; its utterances are marked with judge ``"asr"``.
        speaker_encoder: the speaker encoder (None: :func:`default_speaker_encoder`).
        similarity: measure speaker similarity (False: skip it, no encoder is loaded).
        languages: only these language codes (None: all).
        limit: at most this many utterances per language.
        judges: ``{language: (name, recogniser)}`` that score those languages instead of
            ``asr``, e.g. ``{"en": ("pocketsphinx", PocketSphinx())}``.

    Returns:
        Per-language and overall means, with every utterance's scores.

    Raises:
        InputError: a bad manifest or selection, a missing synthesised file, or a pair whose
            reference is not in the manifest selection.
        DependencyError: speaker similarity without resemblyzer installed (and no encoder).
        AudioError: an unreadable audio file.
    """
    manifest = Path(manifest)
    entries = read_manifest(manifest, split, languages, limit)
    pairs = _pair_up(synthesized, entries, manifest)
    encoder = (speaker_encoder or default_speaker_encoder()) if similarity else None
    voices = _Voices(encoder, entries) if encoder is not None else None
    results = []
    for synth, entry in pairs:
        reference_seconds = entry.duration or audio_duration(entry.path)
        ratio = audio_duration(synth) / reference_seconds
        sim = other = None
        if voices is not None:
            sim, other = voices.score(synth, entry)
        judge_name, judge = (judges or {}).get(entry.language, ("asr", asr))
        hypothesis, counts = None, None
        if judge is not None:
            hypothesis = judge.transcribe(synth, language=entry.language or None).text
            counts = edit_counts(entry.text, hypothesis)
        results.append(
            TTSUtterance(
                str(synth),
                str(entry.path),
                entry.language,
                entry.speaker,
                ratio,
                sim,
                hypothesis,
                counts,
                other,
                judge_name if judge is not None else "",
            )
        )
    groups: dict[str, list[TTSUtterance]] = {}
    texts: dict[str, list[str]] = {}
    for result, (_, entry) in zip(results, pairs, strict=True):
        groups.setdefault(result.language, []).append(result)
        texts.setdefault(result.language, []).append(entry.text)
    table = {
        language: TTSGroupScore.of(
            language, groups[language], primary_metric(language, " ".join(texts[language]))
        )
        for language in sorted(groups)
    }
    overall = TTSGroupScore.of("all", results, "cer")
    return TTSScore(table, overall, tuple(results), split)


class _Voices:
    """Speaker embeddings of the references, each computed once: the synthesised audio is
    compared with its own reference and with up to ``OTHERS`` references of each other
    speaker of the selection."""

    OTHERS = 2  # references per other speaker: enough for a mean, cheap for large sets

    def __init__(self, encoder: SpeakerEncoder, entries: Sequence[ManifestEntry]) -> None:
        self.encoder = encoder
        self._cache: dict[Path, np.ndarray] = {}
        self.by_speaker: dict[str, list[Path]] = {}
        for entry in entries:
            kept = self.by_speaker.setdefault(entry.speaker, [])
            if len(kept) < self.OTHERS:
                kept.append(entry.path)

    def _embed(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            self._cache[path] = self.encoder.embed_audio(path)
        return self._cache[path]

    def score(self, synth: Path, entry: ManifestEntry) -> tuple[float, float | None]:
        """(similarity to the reference, mean similarity to the other speakers' references;
        None when the selection has no other speaker or the utterances name none)."""
        vector = self.encoder.embed_audio(synth)
        same = cosine_similarity(vector, self._embed(entry.path))
        if not entry.speaker:
            return same, None
        others = [
            cosine_similarity(vector, self._embed(path))
            for speaker, paths in self.by_speaker.items()
            if speaker and speaker != entry.speaker
            for path in paths
        ]
        return same, (sum(others) / len(others) if others else None)
