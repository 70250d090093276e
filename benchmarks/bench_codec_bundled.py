"""The bundled codec on 2 CPU threads: encode and decode real-time factors, streaming decode.

Offline: ``Codec.encode`` and ``Codec.decode`` of ``examples/austen.wav`` repeated to about
28 s (batch 1, float32 compute on the bfloat16-stored weights), median of 5 runs after 2
warm-up runs; real-time factor = compute seconds / audio seconds. Streaming: the decoder fed
one 40 ms frame per ``push``, median and 90th percentile of the per-frame cost (the first 5
frames left out). Peak memory: a fresh process that loads the codec and encodes and decodes
the clip once.

Run ``python -m benchmarks.bench_codec_bundled`` (writes the ``codec-bundled`` section of
``RESULTS.md``), ``--quick`` for a smoke run that only prints.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import (
    PRINT_PEAK_MIB,
    machine_info,
    machine_line,
    print_json,
    print_processor,
    processor_line,
    set_threads,
    time_call,
    today,
    write_section,
)
from omnispeech.audio import load_audio
from omnispeech.pipelines import Codec

THREADS = 2
CLIP = Path(__file__).resolve().parents[1] / "examples" / "austen.wav"


def _peak_rss_mib() -> float:
    code = (
        "import torch; torch.set_num_threads(2)\n"
        "from omnispeech.pipelines import Codec\n"
        "from omnispeech.audio import load_audio\n"
        f"w = torch.from_numpy(load_audio({str(CLIP)!r}, 24000))[None, None]\n"
        "c = Codec.from_pretrained(); c.decode(*c.encode(w))\n" + PRINT_PEAK_MIB
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(repeats: int, copies: int) -> dict:
    """The numbers of the section, as a dict."""
    codec = Codec.from_pretrained()
    wav = torch.from_numpy(load_audio(CLIP, codec.sample_rate)).repeat(copies)[None, None]
    seconds = wav.shape[-1] / codec.sample_rate
    codes, frames = codec.encode(wav)
    encode = time_call(lambda: codec.encode(wav), repeats, warmup=2)
    decode = time_call(lambda: codec.decode(codes, frames), repeats, warmup=2)
    costs = []
    with torch.inference_mode(), codec.decoder.streaming(1):
        for t in range(codes.shape[-1]):
            start = time.perf_counter()
            codec.decoder.push(codes[..., t : t + 1])
            costs.append(time.perf_counter() - start)
    costs = sorted(costs[5:])
    return {
        "audio_s": round(seconds, 2),
        "frames": int(codes.shape[-1]),
        "encode_rtf": encode.median / seconds,
        "decode_rtf": decode.median / seconds,
        "push_ms_median": 1000 * costs[len(costs) // 2],
        "push_ms_p90": 1000 * costs[int(0.9 * len(costs))],
        "frame_ms": 1000 / codec.frame_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: print, write nothing")
    args = parser.parse_args()
    set_threads(THREADS)
    info = machine_info()
    print_processor(info)
    result = measure(repeats=2 if args.quick else 5, copies=1 if args.quick else 4)
    result["peak_mib"] = None if args.quick else _peak_rss_mib()
    print_json(result)
    if args.quick:
        return
    row = (
        f"| {result['encode_rtf']:.4f} | {result['decode_rtf']:.4f} | "
        f"{result['push_ms_median']:.1f} ms median, {result['push_ms_p90']:.1f} ms p90 | "
        f"{result['peak_mib']:.0f} MiB |"
    )
    body = f"""## Codec: the bundled codec (omnispeech-codec-small) on CPU ({today()})

{machine_line(info)}; {THREADS} threads, `examples/austen.wav` repeated to {result["audio_s"]} s
({result["frames"]} frames), batch 1, float32 compute on the bfloat16-stored weights.
Real-time factor: compute / audio seconds (median of 5 runs). Streaming: one frame per push.

| encode RTF | decode RTF | streaming push, one {result["frame_ms"]:.0f} ms frame | peak memory |
|---|---|---|---|
{row}
"""
    write_section("codec-bundled", body, processor=processor_line(info))
    print(json.dumps({"written": "benchmarks/RESULTS.md"}))


if __name__ == "__main__":
    main()
