"""The bundled ASR model on 2 CPU threads: real-time factor offline and streaming, peak memory.

Offline: ``ASR.transcribe`` of held-out utterances (encoder, prompt, greedy decoding joint
with the CTC head at the model's own weight), total compute over total audio; for a model with
a CTC head also with the decoder alone (weight 0), and the cost ratio of joint decoding.
Streaming: ``ASR.stream`` fed 100 ms pieces of a long recording made by joining held-out
utterances; the cost per second of audio and the wait after the last piece for the final
text. Peak memory: the process's maximum resident set, measured in a fresh
subprocess that loads the model and transcribes (so the figure holds only that).

Run ``python -m benchmarks.bench_asr_bundled --manifest corpus/manifest.jsonl`` (writes the
``asr-bundled`` section of ``RESULTS.md``), ``--quick`` for a smoke run that only prints.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

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
from omnispeech.audio import load_audio
from omnispeech.eval import read_manifest
from omnispeech.pipelines import ASR

THREADS = 2
SAMPLE_RATE = 16_000


def _peak_rss_mib(model: str | None, wav: Path) -> float:
    code = (
        "import torch; torch.set_num_threads(2)\n"
        "from omnispeech.pipelines import ASR\n"
        f"asr = ASR.from_pretrained({model!r}); asr.transcribe({str(wav)!r})\n" + PRINT_PEAK_MIB
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _offline_rtf(asr: ASR, entries: list) -> tuple[float, float]:
    """(compute seconds / audio seconds, audio seconds) of transcribing ``entries``."""
    audio = compute = 0.0
    for e in entries:
        wav = load_audio(e.path, SAMPLE_RATE)
        start = time.perf_counter()
        asr.transcribe(wav, language=e.language)
        compute += time.perf_counter() - start
        audio += wav.shape[0] / SAMPLE_RATE
    return compute / audio, audio


def main() -> None:
    print_processor()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True, help="held-out utterances")
    parser.add_argument("--model", default=None, help="ASR folder (default: bundled)")
    parser.add_argument("--utterances", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="smoke run: print only")
    args = parser.parse_args()
    set_threads(THREADS)
    n = 4 if args.quick else args.utterances
    entries = read_manifest(args.manifest, "test")
    entries = [entries[i * len(entries) // n] for i in range(n)]
    asr = ASR.from_pretrained(args.model)
    asr.transcribe(entries[0].path, language=entries[0].language)  # warm-up
    weight = asr.ctc_weight
    rtf, audio = _offline_rtf(asr, entries)
    alone = rtf
    if weight > 0:
        asr.ctc_weight = 0.0
        alone, _ = _offline_rtf(asr, entries)
        asr.ctc_weight = weight
    # Streaming: the same utterances joined with 0.3 s pauses, pushed 100 ms at a time.
    pause = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
    joined = np.concatenate([x for e in entries for x in (load_audio(e.path, SAMPLE_RATE), pause)])
    piece = SAMPLE_RATE // 10
    with torch.inference_mode(), asr.stream(language=entries[0].language) as live:
        start = time.perf_counter()
        for i in range(0, joined.shape[0], piece):
            live.push(joined[i : i + piece])
        pushed = time.perf_counter()
        live.finish()
        done = time.perf_counter()
    stream_seconds = joined.shape[0] / SAMPLE_RATE
    result = {
        "utterances": n,
        "audio_seconds": round(audio, 1),
        "ctc_weight": weight,
        "offline_rtf": round(rtf, 4),
        "offline_rtf_decoder_alone": round(alone, 4),
        "joint_cost_ratio": round(rtf / alone, 3),
        "stream_seconds": round(stream_seconds, 1),
        "stream_rtf": round((pushed - start) / stream_seconds, 4),
        "final_text_after_last_piece_s": round(done - pushed, 3),
        "peak_rss_mib": round(_peak_rss_mib(args.model, entries[0].path), 1),
        "parameters_m": round(sum(p.numel() for p in asr.parameters()) / 1e6, 2),
    }
    print_json(result)
    if args.quick:
        return
    r = result
    body = f"""## ASR: the bundled model on CPU ({today()})

{machine_line(machine_info())}; {THREADS} threads, float32, forced language, greedy decoding
joint with the CTC head at weight {weight} (the model's own).

| measure | value |
|---|---|
| parameters | {result["parameters_m"]} M |
| offline real-time factor ({n} utterances, {result["audio_seconds"]} s) | {r["offline_rtf"]} |
| offline, the decoder alone (CTC weight 0) | {r["offline_rtf_decoder_alone"]} |
| cost of joint decoding (ratio of the two) | {r["joint_cost_ratio"]}x |
| streaming real-time factor (100 ms pushes, {r["stream_seconds"]} s) | {r["stream_rtf"]} |
| final text after the last piece | {result["final_text_after_last_piece_s"]} s |
| peak resident memory (load + one utterance) | {result["peak_rss_mib"]} MiB |
"""
    write_section("asr-bundled", body, processor=processor_line(machine_info()))
    print(json.dumps({"written": "benchmarks/RESULTS.md"}))


if __name__ == "__main__":
    main()
