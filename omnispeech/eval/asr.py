"""Speech recognition accuracy over a JSONL manifest: CER / WER per language and overall.

A manifest holds one JSON object per line::

    {"path": "clips/0001.wav", "text": "hello there", "language": "en",
     "speaker": "spk1", "split": "test", "duration": 1.52}

``path`` and ``text`` are required; ``path`` is relative to the manifest's folder (or
absolute); ``language`` (an ISO 639 code such as ``en``, ``zh``), ``speaker``, ``split`` and
``duration`` (seconds) are optional. Blank lines are skipped.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from omnispeech.errors import InputError
from omnispeech.eval.report import PerLanguageReport, format_table, language_rows
from omnispeech.eval.text import EditCounts, Metric, edit_counts, primary_metric


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    """One utterance of a manifest.

    Attributes:
        path: the audio file (resolved against the manifest's folder).
        text: its transcript.
        language: ISO 639 code, or "" when the manifest does not say.
        speaker: speaker id, or "".
        split: ``train`` / ``dev`` / ``test`` ..., or "".
        duration: seconds, or None when the manifest does not say.
        line: the 1-based line number in the manifest (for messages).
        engine: the speech engine that made it (synthetic corpora), or "".
        voice: the engine's voice name, or "".
    """

    path: Path
    text: str
    language: str = ""
    speaker: str = ""
    split: str = ""
    duration: float | None = None
    line: int = 0
    engine: str = ""
    voice: str = ""


def read_manifest(
    manifest: str | Path,
    split: str | None = None,
    languages: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[ManifestEntry]:
    """Read a JSONL manifest and select utterances.

    Args:
        manifest: the ``.jsonl`` file.
        split: keep only this split (None: all lines).
        languages: keep only these language codes (None: all).
        limit: keep at most this many utterances per language, in manifest order (None: all).

    Returns:
        The selected entries, in manifest order.

    Raises:
        InputError: a missing file, a line that is not a JSON object or lacks ``path`` /
            ``text``, a split that no line has, or no utterance left after selection.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise InputError(f"manifest not found: {manifest}")
    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    root = manifest.resolve().parent
    entries: list[ManifestEntry] = []
    with manifest.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                entries.append(_entry(_parse(line, manifest, number), root, manifest, number))
    return _select(entries, manifest, split, languages, limit)


def _parse(line: str, manifest: Path, number: int) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{manifest}:{number}: not valid JSON: {exc.msg}") from None
    if not isinstance(item, dict):
        raise InputError(f"{manifest}:{number}: expected a JSON object")
    return item


def _entry(item: dict[str, Any], root: Path, manifest: Path, number: int) -> ManifestEntry:
    for field in ("path", "text"):
        if not isinstance(item.get(field), str) or (field == "path" and not item[field]):
            raise InputError(f"{manifest}:{number}: missing or non-string field {field!r}")
    duration = item.get("duration")
    if duration is not None and not isinstance(duration, int | float):
        raise InputError(f"{manifest}:{number}: 'duration' must be a number of seconds")
    return ManifestEntry(
        path=root / item["path"],
        text=item["text"],
        language=str(item.get("language") or ""),
        speaker=str(item.get("speaker") or ""),
        split=str(item.get("split") or ""),
        duration=None if duration is None else float(duration),
        line=number,
        engine=str(item.get("engine") or ""),
        voice=str(item.get("voice") or ""),
    )


def _select(
    entries: list[ManifestEntry],
    manifest: Path,
    split: str | None,
    languages: Sequence[str] | None,
    limit: int | None,
) -> list[ManifestEntry]:
    if split is not None:
        splits = sorted({e.split for e in entries})
        entries = [e for e in entries if e.split == split]
        if not entries:
            present = ", ".join(repr(s) for s in splits) or "none"
            raise InputError(f"{manifest}: no utterance in split {split!r} (splits: {present})")
    if languages:
        wanted = {x.strip() for x in languages}
        entries = [e for e in entries if e.language in wanted]
    if limit is not None:
        seen: dict[str, int] = {}
        kept = []
        for e in entries:
            seen[e.language] = seen.get(e.language, 0) + 1
            if seen[e.language] <= limit:
                kept.append(e)
        entries = kept
    if not entries:
        raise InputError(f"{manifest}: no utterance left after selecting languages {languages}")
    return entries


class Transcriber(Protocol):
    """What :func:`evaluate_asr` needs of a model (:class:`omnispeech.ASR` is one)."""

    def transcribe(self, audio: str | Path, *, language: str | None = None) -> Any:
        """Return an object with a ``text`` attribute."""


@dataclasses.dataclass(frozen=True)
class UtteranceResult:
    """One recognised utterance.

    Attributes:
        path: the audio file.
        language: the manifest's language code.
        reference: the manifest's transcript.
        hypothesis: the recognised text.
        counts: token and character edits (see :class:`omnispeech.eval.text.EditCounts`).
    """

    path: str
    language: str
    reference: str
    hypothesis: str
    counts: EditCounts

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "path": self.path,
            "language": self.language,
            "reference": self.reference,
            "hypothesis": self.hypothesis,
            "cer": _finite(self.counts.cer),
            "wer": _finite(self.counts.wer),
        }


@dataclasses.dataclass(frozen=True)
class LanguageScore:
    """Corpus-level error rates of one language (or of everything, ``language="all"``).

    Attributes:
        language: code, or "" for utterances without one, or "all".
        utterances: number scored.
        cer: character error rate.
        wer: word error rate (over characters for unspaced scripts).
        metric: the primary metric (``"cer"`` for unspaced scripts, else ``"wer"``).
    """

    language: str
    utterances: int
    cer: float
    wer: float
    metric: Metric

    @property
    def primary(self) -> float:
        """The value of the primary metric."""
        return self.cer if self.metric == "cer" else self.wer

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "utterances": self.utterances,
            "cer": _finite(self.cer),
            "wer": _finite(self.wer),
            "metric": self.metric,
            "primary": _finite(self.primary),
        }


def _finite(x: float) -> float | None:
    """JSON has no NaN: undefined rates (no reference words) are written as null."""
    return None if math.isnan(x) else round(x, 6)


def _language_scores(
    results: Iterable[tuple[str, str, EditCounts]],
) -> tuple[dict[str, LanguageScore], LanguageScore]:
    """Per-language and overall scores from ``(language, reference, counts)`` triples."""
    by_language: dict[str, list[tuple[str, EditCounts]]] = {}
    everything: list[EditCounts] = []
    for language, reference, counts in results:
        by_language.setdefault(language, []).append((reference, counts))
        everything.append(counts)
    table = {}
    for language in sorted(by_language):
        items = by_language[language]
        total = EditCounts.total(c for _, c in items)
        metric = primary_metric(language, " ".join(r for r, _ in items))
        table[language] = LanguageScore(language, len(items), total.cer, total.wer, metric)
    total = EditCounts.total(everything)
    # Overall, CER is the one rate every script shares.
    overall = LanguageScore("all", len(everything), total.cer, total.wer, "cer")
    return table, overall


@dataclasses.dataclass(frozen=True)
class ASRScore(PerLanguageReport):
    """Recognition accuracy on a manifest.

    Attributes:
        per_language: ``{language code: LanguageScore}``, sorted by code.
        overall: all utterances pooled (its primary metric is CER).
        utterances: every utterance's result, in manifest order.
        split: the split evaluated (None: all lines).
    """

    per_language: dict[str, LanguageScore]
    overall: LanguageScore
    utterances: tuple[UtteranceResult, ...]
    split: str | None = None

    task = "asr"

    def to_markdown(self, title: str = "ASR evaluation") -> str:
        """A markdown report: one table row per language plus the overall row."""
        rows = language_rows(
            {k: v.to_dict() for k, v in self.per_language.items()},
            self.overall.to_dict(),
            ("utterances", "cer", "wer", "metric"),
        )
        head = f"## {title}\n\nSplit: {self.split or 'all'}. Primary metric in **bold**.\n\n"
        return head + format_table(["language", "utterances", "CER", "WER", "primary"], rows)


def evaluate_asr(
    asr: Transcriber,
    manifest: str | Path,
    split: str | None = "test",
    languages: Sequence[str] | None = None,
    limit: int | None = None,
    force_language: bool = True,
) -> ASRScore:
    """Transcribe a manifest's utterances and score them against its transcripts.

    Args:
        asr: the model (:class:`omnispeech.ASR`, or anything with ``transcribe(path,
            language=...)`` returning an object with ``text``).
        manifest: the JSONL manifest (see the module docstring).
        split: evaluate this split (None: every line).
        languages: only these language codes (None: all).
        limit: at most this many utterances per language.
        force_language: tell the model each utterance's language (the manifest's); False
            lets it detect the language, which then counts in the score.

    Returns:
        Per-language and overall CER / WER, with every utterance's hypothesis.

    Raises:
        InputError: a bad manifest or selection (see :func:`read_manifest`), or a language
            the model does not support.
        AudioError: an unreadable audio file.
    """
    entries = read_manifest(manifest, split, languages, limit)
    results = []
    for entry in entries:
        language = entry.language if force_language and entry.language else None
        hypothesis = asr.transcribe(entry.path, language=language).text
        counts = edit_counts(entry.text, hypothesis)
        results.append(
            UtteranceResult(str(entry.path), entry.language, entry.text, hypothesis, counts)
        )
    table, overall = _language_scores((r.language, r.reference, r.counts) for r in results)
    return ASRScore(table, overall, tuple(results), split)
