"""Synthesised speech scored against a manifest's reference recordings.

For each manifest utterance, the synthesised audio of its text is compared with the recorded
reference:

* **intelligibility**: an ASR model transcribes the synthesised audio; CER / WER against the
  manifest's text (optional: only with a model);
* **speaker similarity**: cosine similarity of speaker embeddings of the synthesised audio and
  the reference recording (:mod:`omnispeech.eval.speaker`);
* **duration ratio**: synthesised seconds over reference seconds (1 = the same pace).

Synthesised audio is found in a folder, by the reference's path relative to the manifest
(``clips/0001.wav`` -> ``DIR/clips/0001.wav``) or else by its file name (``DIR/0001.wav``),
with any of the extensions .wav, .flac, .ogg; or it is given as (synthesised, reference) pairs.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omnispeech.audio import audio_duration
from omnispeech.errors import InputError
from omnispeech.eval.asr import ManifestEntry, Transcriber, read_manifest
from omnispeech.eval.report import PerLanguageReport, format_table, language_rows
from omnispeech.eval.speaker import SpeakerEncoder, default_speaker_encoder
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
    """

    path: str
    reference: str
    language: str
    speaker: str
    duration_ratio: float
    speaker_similarity: float | None = None
    hypothesis: str | None = None
    counts: EditCounts | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out: dict[str, Any] = {
            "path": self.path,
            "reference": self.reference,
            "language": self.language,
            "speaker": self.speaker,
            "duration_ratio": round(self.duration_ratio, 6),
            "speaker_similarity": _round(self.speaker_similarity),
        }
        if self.counts is not None:
            out |= {
                "hypothesis": self.hypothesis,
                "cer": _round(self.counts.cer),
                "wer": _round(self.counts.wer),
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
    """

    language: str
    utterances: int
    speaker_similarity: float | None
    duration_ratio: float
    cer: float | None
    wer: float | None
    metric: Metric

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
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "utterances": self.utterances,
            "speaker_similarity": _round(self.speaker_similarity),
            "duration_ratio": _round(self.duration_ratio),
            "cer": _round(self.cer),
            "wer": _round(self.wer),
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
        columns = ("utterances", "speaker_similarity", "duration_ratio", "cer", "wer", "metric")
        rows = language_rows(
            {k: v.to_dict() for k, v in self.per_language.items()},
            self.overall.to_dict(),
            columns,
        )
        head = (
            f"## {title}\n\nSplit: {self.split or 'all'}. Speaker similarity: cosine to the "
            "reference recording (1 = same voice). Duration ratio: synthesised / reference. "
            "CER / WER: ASR of the synthesised audio (primary metric in **bold**).\n\n"
        )
        headers = ["language", "utterances", "speaker sim.", "duration ratio", "CER", "WER"]
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
) -> TTSScore:
    """Score synthesised audio against a manifest's references.

    Args:
        synthesized: a folder of synthesised files (named as described in the module
            docstring), or ``(synthesised file, reference file)`` pairs whose reference is a
            manifest ``path`` (as a file path, i.e. resolved against the manifest's folder).
        manifest: the JSONL manifest (see :mod:`omnispeech.eval.asr`).
        split: evaluate this split (None: every line).
        asr: a model to measure intelligibility with (None: no CER / WER).
        speaker_encoder: the speaker encoder (None: :func:`default_speaker_encoder`).
        similarity: measure speaker similarity (False: skip it, no encoder is loaded).
        languages: only these language codes (None: all).
        limit: at most this many utterances per language.

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
    results = []
    for synth, entry in pairs:
        reference_seconds = entry.duration or audio_duration(entry.path)
        ratio = audio_duration(synth) / reference_seconds
        sim = encoder.similarity(synth, entry.path) if encoder is not None else None
        hypothesis, counts = None, None
        if asr is not None:
            hypothesis = asr.transcribe(synth, language=entry.language or None).text
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
