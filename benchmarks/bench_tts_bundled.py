"""The bundled TTS model (or any others) on 2 CPU threads: first packet, real-time factor,
peak memory.

For each model, a voice is cloned from ``examples/austen.wav`` (speaker vector), then held-out
sentences of a manifest's test split are streamed with ``TTS.stream`` one after another:

* **first packet**: seconds from the call to the first audio chunk (text front end, prompt,
  the first frame and its first Code2Wav step), median and maximum over the sentences;
* **real-time factor**: compute seconds over seconds of speech, whole utterances streamed;
* **peak memory**: the maximum resident set of a fresh subprocess that loads the model and
  speaks one sentence (so the figure holds only that).

Same seed for every model; the models are timed alternately sentence by sentence, so
background load hits them alike. Run from the repository root::

    python -m benchmarks.bench_tts_bundled --manifest corpus/manifest.jsonl   # bundled model
    python -m benchmarks.bench_tts_bundled --manifest corpus/manifest.jsonl \\
        --model runs/tts_aria/model --model runs/tts_dual/model --section tts-arrangements
    python -m benchmarks.bench_tts_bundled --manifest corpus/manifest.jsonl \\
        --quantize none --quantize int8 --quantize int4   # the bundled model's weight modes
    python -m benchmarks.bench_tts_bundled --manifest corpus/manifest.jsonl \\
        --guidance 1 --guidance 2 --section tts-guidance   # without and with guidance
    python -m benchmarks.bench_tts_bundled --manifest corpus/manifest.jsonl --quick  # prints only
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (
    PRINT_PEAK_MIB,
    machine_info,
    machine_line,
    print_json,
    print_processor,
    processor_line,
    set_threads,
    today,
    write_section,
)
from omnispeech.eval import read_manifest
from omnispeech.pipelines.tts import TTS

THREADS = 2
ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "examples" / "austen.wav"


def _peak_rss_mib(
    model: str | None, quantize: str | None, guidance: float | None, text: str
) -> float:
    code = (
        "import torch; torch.set_num_threads(2)\n"
        "from omnispeech.pipelines.tts import TTS\n"
        f"tts = TTS.from_pretrained({model!r}, quantize={quantize!r})\n"
        + ("" if guidance is None else f"tts.set_guidance({guidance!r})\n")
        + f"tts.synthesize({text!r}, tts.voice({str(CLIP)!r}), language='en', seed=0)\n"
        + PRINT_PEAK_MIB
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _speak(tts: TTS, voice, entry) -> tuple[float, float, float]:  # noqa: ANN001
    """(first packet s, compute s, speech s) of streaming one sentence."""
    start = time.perf_counter()
    first = None
    samples = 0
    for chunk in tts.stream(entry.text, voice, language=entry.language, seed=0):
        if first is None:
            first = time.perf_counter() - start
        samples += chunk.shape[0]
    took = time.perf_counter() - start
    return first or took, took, samples / tts.sample_rate


def main() -> None:
    print_processor()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True, help="held-out sentences")
    parser.add_argument(
        "--model", action="append", default=None, help="TTS folder (repeat; default: bundled)"
    )
    parser.add_argument(
        "--quantize",
        action="append",
        choices=["none", "int8", "int4"],
        default=None,
        help="weight mode of every model (repeat for several rows; default: none)",
    )
    parser.add_argument(
        "--guidance",
        action="append",
        type=float,
        default=None,
        help="classifier-free guidance scale of every model (repeat for several rows; default: "
        "the folder's own)",
    )
    parser.add_argument("--languages", default="en", help="comma-separated codes of the sentences")
    parser.add_argument("--sentences", type=int, default=20)
    parser.add_argument("--section", default="tts-bundled", help="RESULTS.md section to write")
    parser.add_argument("--quick", action="store_true", help="smoke run: print only")
    args = parser.parse_args()
    set_threads(THREADS)
    # (folder, weight mode, guidance) per row; None = the bundled folder / float32 weights /
    # the folder's own guidance
    models = [
        (name, None if q == "none" else q, g)
        for name in args.model or [None]
        for q in args.quantize or ["none"]
        for g in args.guidance or [None]
    ]
    n = 3 if args.quick else args.sentences
    entries = read_manifest(args.manifest, "test", args.languages.split(","))
    entries = [entries[i * len(entries) // n] for i in range(n)]
    loaded = []
    for name, quantize, guidance in models:
        tts = TTS.from_pretrained(name, quantize=quantize)
        if guidance is not None:
            tts.set_guidance(guidance)
        voice = tts.voice(CLIP)
        _speak(tts, voice, entries[0])  # warm-up
        loaded.append((tts, voice))
    stats: list[dict[str, list[float]]] = [{"first": [], "took": [], "speech": []} for _ in models]
    for entry in entries:
        for (tts, voice), s in zip(loaded, stats, strict=True):
            first, took, speech = _speak(tts, voice, entry)
            s["first"].append(first)
            s["took"].append(took)
            s["speech"].append(speech)
    rows = []
    for (name, quantize, guidance), (tts, _), s in zip(models, loaded, stats, strict=True):
        # Counted on the float32 model: quantized weights are buffers, not parameters.
        talker = TTS.from_pretrained(name).talker if quantize else tts.talker
        params = sum(p.numel() for p in talker.parameters()) / 1e6
        rows.append(
            {
                "model": (name or "bundled")
                + (f" {quantize}" if quantize else "")
                + (f" guidance {guidance:g}" if guidance is not None else ""),
                "talker_parameters_m": round(params, 2),
                "sentences": n,
                "speech_seconds": round(sum(s["speech"]), 1),
                "first_packet_median_s": round(statistics.median(s["first"]), 3),
                "first_packet_max_s": round(max(s["first"]), 3),
                "rtf": round(sum(s["took"]) / sum(s["speech"]), 3),
                "peak_rss_mib": round(_peak_rss_mib(name, quantize, guidance, entries[0].text), 1),
            }
        )
    print_json(rows)
    if args.quick:
        return
    table = "\n".join(
        f"| {r['model']} | {r['talker_parameters_m']} M | {r['speech_seconds']} s "
        f"| {r['first_packet_median_s']} s ({r['first_packet_max_s']} s) | {r['rtf']} "
        f"| {r['peak_rss_mib']} MiB |"
        for r in rows
    )
    body = f"""## TTS: {", ".join(r["model"] for r in rows)} on CPU ({today()})

{machine_line(machine_info())}; {THREADS} threads, float32 (int8 / int4: the talker's and
code predictor's per-frame weights so stored; int8 computes in bfloat16), voice cloned from
`examples/austen.wav` (speaker vector), {n} held-out sentences ({args.languages}) of
`{args.manifest.name}`'s test split streamed with `TTS.stream`, seed 0. First packet: from the
call to the first audio chunk, median (max). Real-time factor: compute / speech seconds.
Peak memory: a fresh process loading the model and speaking one sentence.

| model | talker + code predictor | speech | first packet | real-time factor | peak memory |
|---|---|---|---|---|---|
{table}
"""
    write_section(args.section, body, processor=processor_line(machine_info()))
    print(json.dumps({"written": "benchmarks/RESULTS.md"}))


if __name__ == "__main__":
    main()
