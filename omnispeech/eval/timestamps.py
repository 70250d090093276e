"""Word-timestamp accuracy against the times espeak-ng reports while it speaks.

Each selected utterance of a manifest spoken by espeak-ng is spoken again by the espeak-ng
library with the same voice, which reports when each word starts; the recogniser's forced
alignment of the same text places the words, and the boundaries between words are compared
(the first word's start is left out: the engine reports it at time 0, before its leading
silence). Utterances whose word counts differ (numbers read as several words) are skipped and
counted.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from omnispeech.errors import InputError
from omnispeech.eval.asr import read_manifest


@dataclasses.dataclass
class TimestampScore:
    """Boundary errors in milliseconds, overall and per language."""

    errors_ms: list[float] = dataclasses.field(default_factory=list)
    per_language: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    utterances: int = 0
    skipped: int = 0
    refused: int = 0  # alignments refused as not matching (a wrong refusal: the text is right)

    def to_dict(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float | int | None]:
            if not values:
                return {"boundaries": 0, "mae_ms": None, "median_ms": None}
            arr = np.abs(np.asarray(values))
            return {
                "boundaries": len(values),
                "mae_ms": round(float(arr.mean()), 1),
                "median_ms": round(float(np.median(arr)), 1),
                "within_100ms": round(float((arr <= 100).mean()), 3),
            }

        return {
            "utterances": self.utterances,
            "skipped": self.skipped,
            "refused": self.refused,
            "overall": stats(self.errors_ms),
            "per_language": {k: stats(v) for k, v in sorted(self.per_language.items())},
        }


def evaluate_timestamps(  # noqa: PLR0913 - the model, the reference, the selection
    asr: Any,
    speak: Callable[[str, str], tuple[np.ndarray, int, list[Any]]],
    manifest: str | Path,
    split: str | None = "test",
    languages: list[str] | None = None,
    limit: int | None = None,
) -> TimestampScore:
    """Align the espeak-ng utterances of ``manifest`` and score the word boundaries.

    Args:
        asr: an :class:`~omnispeech.pipelines.ASR` with a CTC head.
        speak: ``(text, voice) -> (samples, sample_rate, words)``, words having ``start``
            seconds: the reference (``omnispeech.pipelines.espeak_speech.EspeakLibrary.speak``).
        manifest: JSONL with ``text``, ``language``, ``engine`` and ``voice`` per line.
        split: only this split (None: all).
        languages: only these codes.
        limit: at most this many utterances per language.

    Raises:
        InputError: no espeak-ng utterance among the selected ones.
    """
    from omnispeech.pipelines.asr_align import AlignmentError

    asr.require_ctc()
    score = TimestampScore()
    entries = [e for e in read_manifest(manifest, split, languages, limit) if _espeak_voice(e)]
    if not entries:
        raise InputError(f"{manifest}: no espeak-ng utterances selected; nothing to time")
    for entry in entries:
        if re.search(r"\d", entry.text):
            score.skipped += 1  # numbers: the engine's words differ from the written ones
            continue
        wav, rate, spoken = speak(entry.text, _espeak_voice(entry))
        try:
            aligned = asr.align(wav, entry.text, sample_rate=rate).words
        except AlignmentError:
            score.refused += 1
            continue
        if len(aligned) != len(spoken) or len(spoken) < 2:
            score.skipped += 1
            continue
        score.utterances += 1
        errors = [1000 * (a.start - s.start) for a, s in zip(aligned[1:], spoken[1:], strict=True)]
        score.errors_ms.extend(errors)
        score.per_language.setdefault(entry.language, []).extend(errors)
    return score


def _espeak_voice(entry: Any) -> str:
    """The espeak-ng voice name of a manifest entry, or '' for other engines."""
    return entry.voice if entry.engine == "espeak-ng" else ""
