"""Write the bundled recogniser's scores into ``benchmarks/RESULTS.md`` from ``omnispeech
eval`` output, so the table is made by a script, not by hand::

    omnispeech eval asr corpus/manifest.jsonl --split test --limit 10 --json scores/test.json
    omnispeech eval asr real_en/manifest.jsonl --split all --json scores/real.json
    omnispeech eval asr degraded/manifest.jsonl --split noise --json scores/noise.json   # and
    #   reverb, telephone (recipes/asr/degrade.py makes them)
    omnispeech eval timestamps corpus/manifest.jsonl --limit 5 > scores/timestamps.json
    python recipes/asr/report.py scores --model omnispeech/bundled/asr-small

Missing files are left out of the section. The clean score of the degraded utterances is
computed from ``test.json``'s per-utterance rows (the same first utterances per language),
and every robustness figure is pooled the same way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from omnispeech.pipelines.languages import language_name

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks.common import machine_info, machine_line, today, write_section  # noqa: E402

CONDITIONS = ("noise", "reverb", "telephone")


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _language_table(test: dict) -> list[str]:
    rows = sorted(test["per_language"].items(), key=lambda kv: kv[1]["cer"])
    cers = [v["cer"] for _, v in rows]
    lines = [
        f"Held-out split (unseen voices and unseen sentences), {test['overall']['utterances']} "
        f"utterances, {len(rows)} languages: **median CER {_pct(statistics.median(cers))}**, "
        f"mean {_pct(statistics.mean(cers))}, best {_pct(min(cers))}, worst {_pct(max(cers))}; "
        f"{sum(c <= 0.30 for c in cers)} languages at or under 30 %, "
        f"{sum(c <= 0.10 for c in cers)} at or under 10 %.",
        "",
        "| language | code | utterances | CER | WER |",
        "|---|---|---|---|---|",
    ]
    for code, v in rows:
        lines.append(
            f"| {language_name(code)} | {code} | {v['utterances']} | {_pct(v['cer'])} "
            f"| {_pct(v['wer'])} |"
        )
    return lines


def _pooled_cer(rows: list[dict], per_language: int | None = None) -> float:
    """CER pooled over reference characters (each utterance's CER weighted by its
    reference's length), over the first ``per_language`` rows of each language when given
    (the degraded set's selection), so that clean and degraded are scored alike."""
    seen: dict[str, int] = {}
    errors = chars = 0.0
    for row in rows:
        lang = row.get("language", "")
        if per_language is not None and seen.get(lang, 0) >= per_language:
            continue
        seen[lang] = seen.get(lang, 0) + 1
        errors += row["cer"] * len(row["reference"])
        chars += len(row["reference"])
    return errors / max(chars, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores", type=Path, help="folder of the eval JSON files")
    parser.add_argument("--model", default="omnispeech/bundled/asr-small")
    parser.add_argument("--degraded-per-language", type=int, default=5)
    parser.add_argument(
        "--title",
        default="ASR: the bundled model (omnispeech-asr-small), quality",
        help="the section's heading (say so when the model scored is not the shipped one)",
    )
    args = parser.parse_args()

    test = _load(args.scores / "test.json")
    lines = [
        f"## {args.title}",
        "",
        f"{today()} · model `{args.model}` · scored by `omnispeech eval` · "
        f"{machine_line(machine_info())}",
        "",
    ]
    if test is not None:
        lines += _language_table(test) + [""]
    real = _load(args.scores / "real.json")
    if real is not None:
        o = real["overall"]
        lines.append(
            f"Real recorded English (Debian's pocketsphinx test recordings, "
            f"{o['utterances']} files, never trained on): CER {_pct(o['cer'])}, "
            f"WER {_pct(o['wer'])}."
        )
        lines.append("")
    degraded = {c: _load(args.scores / f"{c}.json") for c in CONDITIONS}
    if test is not None and any(degraded.values()):
        clean = _pooled_cer(test["utterances"], args.degraded_per_language)
        lines += [
            f"Robustness: the first {args.degraded_per_language} held-out utterances of every "
            "language, clean and degraded by `recipes/asr/degrade.py` (CER over all languages).",
            "",
            "| condition | CER |",
            "|---|---|",
            f"| clean | {_pct(clean)} |",
        ]
        for name, score in degraded.items():
            if score is not None:
                lines.append(f"| {name} | {_pct(_pooled_cer(score['utterances']))} |")
        lines.append("")
    stamps = _load(args.scores / "timestamps.json")
    if stamps is not None:
        lines.append(
            "Word timestamps (`omnispeech eval timestamps`: boundaries between words against "
            "the times espeak-ng reports while speaking): "
            + json.dumps(
                {k: stamps.get(k) for k in ("utterances", "refused", "skipped")}
                | stamps.get("overall", {}),
                ensure_ascii=False,
            )
            + " (refused: the model's alignment did not match the known transcript)"
        )
        lines.append("")
    write_section("asr-bundled-quality", "\n".join(lines).rstrip() + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
