"""Read a built corpus back: its manifest, a markdown table of it, the languages on offer."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from omnispeech.data.build import SPLITS, available_voices, usable_engines
from omnispeech.data.engines import Engine
from omnispeech.data.text import gather_sentences
from omnispeech.errors import InputError


def read_manifest(path: Path) -> list[dict]:
    """The records of a ``manifest.jsonl`` (a corpus folder is read at ``DIR/manifest.jsonl``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.jsonl"
    if not path.exists():
        raise InputError(f"{path}: no manifest; build a corpus with `omnispeech data build`")
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def corpus_stats(path: Path) -> str:
    """A markdown table of a corpus: hours, utterances, languages, speakers, engines, licences.

    Args:
        path: a corpus folder or its ``manifest.jsonl``.

    Returns:
        Markdown text: one summary table, then one row per split.
    """
    records = read_manifest(path)
    hours = sum(r["duration"] for r in records) / 3600
    per_lang = Counter(r["language"] for r in records)
    distinct = {
        lang: len({r["text"] for r in records if r["language"] == lang}) for lang in per_lang
    }
    counts = sorted(distinct.values()) or [0]
    engines = Counter(r["engine"] for r in records)
    licences = Counter(r["licence"] for r in records)
    texts = Counter(r["text_source"] for r in records)
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| hours | {hours:.2f} |",
        f"| utterances | {len(records)} |",
        f"| languages | {len(per_lang)} |",
        f"| languages with >= 200 distinct sentences | {sum(c >= 200 for c in counts)} |",
        f"| distinct sentences per language (min / median / max) | {counts[0]} / "
        f"{counts[len(counts) // 2]} / {counts[-1]} |",
        f"| speakers (voices) | {len({r['speaker'] for r in records})} |",
        f"| voice x language pairs | {len({(r['voice'], r['engine']) for r in records})} |",
        "| engines (utterances) | "
        + ", ".join(f"{k} {v}" for k, v in sorted(engines.items()))
        + " |",
        "| voice licences (utterances) | "
        + ", ".join(f"{k} {v}" for k, v in sorted(licences.items()))
        + " |",
        "| text sources (utterances) | "
        + ", ".join(f"{k} {v}" for k, v in sorted(texts.items()))
        + " |",
        "",
        "| split | utterances | hours | speakers |",
        "|---|---|---|---|",
    ]
    for split in SPLITS:
        rs = [r for r in records if r["split"] == split]
        lines.append(
            f"| {split} | {len(rs)} | {sum(r['duration'] for r in rs) / 3600:.2f} | "
            f"{len({r['speaker'] for r in rs})} |"
        )
    return "\n".join(lines) + "\n"


def language_table(redistributable: bool = False, engines: Sequence[Engine] | None = None) -> str:
    """A markdown table: language -> distinct sentences, engines and voices on this machine."""
    found = usable_engines(engines)
    sentences = gather_sentences(redistributable=redistributable)
    voices = available_voices(found, set(sentences), redistributable)
    lines = ["| language | sentences | engines | voices |", "|---|---|---|---|"]
    for lang in sorted(set(sentences) | set(voices)):
        vs = voices.get(lang, [])
        names = ", ".join(sorted({v.engine for v in vs})) or "-"
        lines.append(f"| {lang} | {len(sentences.get(lang, []))} | {names} | {len(vs)} |")
    usable = [lang for lang in sentences if lang in voices]
    lines.append(f"\n{len(usable)} languages have both sentences and a voice.")
    return "\n".join(lines) + "\n"
