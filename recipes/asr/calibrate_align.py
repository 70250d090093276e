"""Measure where ``align`` should refuse a transcript: the alignment gap (nats per encoder step
between the best CTC path and the forced one) of held-out utterances with their own transcript
and with another utterance's transcript of the same language::

    python recipes/asr/calibrate_align.py corpus/manifest.jsonl --limit 3

It prints the two distributions and the threshold that separates them best (the balanced
accuracy over both kinds); ``MISMATCH_NATS`` in ``omnispeech/pipelines/asr_align.py`` is set
from it. Transcripts too long for their audio cannot be aligned at all and are counted apart.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from omnispeech.eval.asr import read_manifest
from omnispeech.pipelines import ASR
from omnispeech.pipelines.asr_align import AlignmentError


def _gap(asr: ASR, path: str, text: str) -> float | None:
    try:
        return asr.align(path, text, check=False).gap
    except AlignmentError:  # longer than the audio's tokens allow: refused whatever the limit
        return None


def best_threshold(matched: list[float], mismatched: list[float]) -> tuple[float, float]:
    """The limit (between two observed gaps) with the best balanced accuracy, and that accuracy."""
    values = np.sort(np.asarray(matched + mismatched))
    limits = np.concatenate([[values[0] - 1e-3], (values[1:] + values[:-1]) / 2])
    a, b = np.asarray(matched), np.asarray(mismatched)
    acc = [(np.mean(a <= t) + np.mean(b > t)) / 2 for t in limits]
    i = int(np.argmax(acc))
    return float(limits[i]), float(acc[i])


def _percentiles(gaps: list[float]) -> dict[str, float]:
    return {f"p{q}": round(float(np.percentile(gaps, q)), 3) for q in (5, 50, 95)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=3, help="utterances per language")
    parser.add_argument("--model", default=None, help="ASR folder (default: bundled)")
    args = parser.parse_args()
    asr = ASR.from_pretrained(args.model)
    entries = read_manifest(args.manifest, args.split, limit=args.limit)
    by_language = defaultdict(list)
    for e in entries:
        by_language[e.language].append(e)
    matched, mismatched, unalignable = [], [], 0
    for group in tqdm(by_language.values(), desc="languages"):
        for i, e in enumerate(group):
            other = group[(i + 1) % len(group)]
            pairs = [(e.text, matched)] + ([(other.text, mismatched)] if other is not e else [])
            for text, into in pairs:
                gap = _gap(asr, str(e.path), text)
                if gap is None:
                    unalignable += 1
                else:
                    into.append(gap)
    limit, accuracy = best_threshold(matched, mismatched)
    print(
        json.dumps(
            {
                "utterances": len(entries),
                "matched": _percentiles(matched),
                "mismatched": _percentiles(mismatched),
                "unalignable": unalignable,
                "best_limit": round(limit, 3),
                "balanced_accuracy": round(accuracy, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
