"""``omnispeech serve`` under load, on this machine, with tiny random models.

Measures, against a server running in this process (127.0.0.1, a free port, 2 workers):

1. Load: 1, 4 and 16 concurrent clients, each sending ``POST /v1/audio/speech`` (streamed PCM,
   capped at ``--speech-seconds`` of audio per request) back to back for ``--seconds``:
   sustained requests per minute and percentiles of the time to the first audio byte.
2. Live transcription: a ``--live-seconds`` recording sent over ``/v1/realtime`` in 100 ms
   pieces at real-time pace; the time from the commit that follows the last piece to the final
   text, and whether that text equals ``ASR.transcribe`` of the same file.
3. A client that leaves mid-stream: the time from closing the connection to its worker being
   free again, and whether generation stopped early.

The models are random (``tests/tts_ref.py``, ``tests/tiny.py``): the numbers measure the
server (queueing, streaming, threads), not a released model. Run from the repository root:
``python -m benchmarks.bench_server`` (writes the ``server`` section of ``RESULTS.md``) or
``--quick`` for a smoke run that only prints.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from benchmarks.common import (
    machine_info,
    machine_line,
    print_json,
    print_processor,
    processor_line,
    sig3,
    today,
    write_section,
)

SR = 16_000


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def load_level(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads sending speech requests back to back for ``seconds``."""
    import httpx

    first_bytes: list[float] = []
    totals: list[float] = []
    failures = 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(i: int) -> None:
        nonlocal failures
        with httpx.Client(base_url=url, timeout=600) as http:
            n = 0
            while time.perf_counter() < stop_at:
                body = {"input": f"Client {i}, request {n}.", "response_format": "pcm"}
                start = time.perf_counter()
                first = None
                with http.stream("POST", "/v1/audio/speech", json=body) as response:
                    for chunk in response.iter_raw():
                        if first is None and chunk:
                            first = time.perf_counter() - start
                    ok = response.status_code == 200
                with lock:
                    if ok and first is not None:
                        first_bytes.append(first)
                        totals.append(time.perf_counter() - start)
                    else:
                        failures += 1
                n += 1

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - began  # includes the requests still running at stop_at
    return {
        "clients": clients,
        "requests": len(totals),
        "failures": failures,
        "elapsed_s": elapsed,
        "requests_per_minute": 60 * len(totals) / elapsed,
        "first_byte_p50_s": _percentile(first_bytes, 50),
        "first_byte_p90_s": _percentile(first_bytes, 90),
        "first_byte_p99_s": _percentile(first_bytes, 99),
        "request_p50_s": _percentile(totals, 50),
    }


def live_latency(url: str, path: Path, asr, runs: int) -> dict[str, Any]:
    """Send ``path`` over the WebSocket at real-time pace; time commit -> final text."""
    from websockets.sync.client import connect

    pcm = sf.read(path, dtype="int16")[0].astype("<i2").tobytes()
    step = 2 * SR // 10  # 100 ms
    offline = asr.transcribe(path).text
    latencies, equal = [], []
    for _ in range(runs):
        with connect(url.replace("http://", "ws://") + "/v1/realtime") as ws:
            ws.recv(timeout=60)
            start = time.perf_counter()
            for k, i in enumerate(range(0, len(pcm), step)):
                # Real-time pace: piece k leaves at k * 100 ms, as a microphone would send it.
                time.sleep(max(0.0, start + k * 0.1 - time.perf_counter()))
                audio = base64.b64encode(pcm[i : i + step]).decode()
                ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            sent = time.perf_counter()
            ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            while True:
                event = json.loads(ws.recv(timeout=600))
                if event["type"] in ("transcription.done", "error"):
                    break
            latencies.append(time.perf_counter() - sent)
            equal.append(event.get("text") == offline)
    return {
        "audio_s": len(pcm) / 2 / SR,
        "final_text_latency_median_s": statistics.median(latencies),
        "final_text_latency_s": latencies,
        "equals_offline": all(equal),
    }


def disconnect_release(url: str, workers, runs: int) -> dict[str, Any]:
    """Leave after the first audio byte; time until the worker is free."""
    import httpx

    freed, early = [], workers.stopped_early
    for i in range(runs):
        with httpx.Client(base_url=url, timeout=600) as http:
            text = f"A long answer, number {i}, that nobody listens to."
            body = {"input": text, "response_format": "pcm"}
            with http.stream("POST", "/v1/audio/speech", json=body) as response:
                next(response.iter_raw())
                left = time.perf_counter()
        while workers.busy:
            time.sleep(0.005)
        freed.append(time.perf_counter() - left)
    return {
        "runs": runs,
        "worker_free_after_median_s": statistics.median(freed),
        "worker_free_after_max_s": max(freed),
        "stopped_early": workers.stopped_early - early,
    }


def _models(folder: Path):
    from omnispeech.apps.models import Models
    from omnispeech.pipelines import ASR, TTS
    from omnispeech.testing import tiny_tokenizer
    from tests.tiny import ref_asr_model
    from tests.tts_ref import tiny_tts

    tok = tiny_tokenizer()
    ref_asr_model(tok).save_pretrained(folder / "asr")
    tok.save(str(folder / "asr" / "tokenizer.json"))
    tts = TTS.from_pretrained(tiny_tts(folder / "tts"))
    return Models(tts, ASR.from_pretrained(folder / "asr"), "tiny-tts", "tiny-asr")


def _parameters(pipeline) -> int:
    from omnispeech.apps.models import _modules

    return sum(p.numel() for m in _modules(pipeline) for p in m.parameters())


def _table(result: dict[str, Any]) -> str:
    rows = [
        "| Clients | Requests | Requests / minute | First audio byte p50 | p90 | p99 "
        "| Whole request p50 | Failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["load"]:
        rows.append(
            f"| {r['clients']} | {r['requests']} | {sig3(r['requests_per_minute'])} "
            f"| {sig3(r['first_byte_p50_s'])} s | {sig3(r['first_byte_p90_s'])} s "
            f"| {sig3(r['first_byte_p99_s'])} s | {sig3(r['request_p50_s'])} s "
            f"| {r['failures']} |"
        )
    return "\n".join(rows)


def report(result: dict[str, Any]) -> str:
    live, gone, info = result["live"], result["disconnect"], result["machine"]
    return f"""## Server: `omnispeech serve` under load, tiny random models, CPU

- Machine: {machine_line(info)}; **shared with a model training job** during the run, so
  absolute times are noisy and pessimistic.
- Date: {today()}
- Command: `python -m benchmarks.bench_server`
- Models: **tiny random** Qwen3-TTS-layout and Qwen3-ASR folders (`tests/tts_ref.py`,
  `tests/tiny.py`; {result["tts_parameters"] / 1e6:.2f} M parameters with the codec, and
  {result["asr_parameters"] / 1e6:.2f} M): they measure the server's queueing, streaming and
  threads, not a released model. Random weights never end speech by themselves,
  so every request is capped at {result["speech_seconds"]:g} s of audio
  (`--max-speech-seconds`).
- Server: in process, 127.0.0.1, {result["workers"]} workers (weight-sharing replicas, one
  thread each), streamed 16-bit PCM at 24 kHz; each client sends its next request as soon as
  the previous one is complete, for {result["seconds"]:g} s per level.

{_table(result)}

Two workers serve two requests at once: throughput grows from 1 client (one worker idle) to 4,
and levels off at 16, where the first audio byte mostly waits in the queue; no request failed
or was lost. The training job's load varied during the run, so the levels differ by more than
concurrency alone explains.

Live transcription over `/v1/realtime` ({sig3(live["audio_s"])} s of audio sent in 100 ms
pieces at real-time pace, then `input_audio_buffer.commit`): final text
**{sig3(live["final_text_latency_median_s"])} s** after the commit (median of
{len(live["final_text_latency_s"])}); final text equal to `ASR.transcribe` of the same file:
{live["equals_offline"]}.

A client that closes the connection after the first audio byte: its worker is free again
after {sig3(gone["worker_free_after_median_s"] * 1000)} ms (median of {gone["runs"]}, worst
{sig3(gone["worker_free_after_max_s"] * 1000)} ms); generation stopped early in
{gone["stopped_early"]} of {gone["runs"]}.
"""


def main(argv: list[str] | None = None) -> None:
    print_processor()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="per load level")
    parser.add_argument("--speech-seconds", type=float, default=1.0)
    parser.add_argument("--live-seconds", type=float, default=9.5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="short smoke run; prints only")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.live_seconds = 5.0, 2.0
    warnings.simplefilter("ignore")  # random weights trip the duration guard on every request
    import torch

    from omnispeech.apps.server import ServerConfig, create_app
    from omnispeech.apps.server.app import BackgroundServer

    torch.set_num_threads(1)  # one core per worker thread, as `omnispeech serve` sets it
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = _models(folder)
        config = ServerConfig(
            workers=args.workers,
            max_speech_seconds=args.speech_seconds,
            voices_dir=folder / "voices",
        )
        rng = np.random.default_rng(0)
        recording = folder / "live.wav"
        wav = 0.1 * rng.standard_normal(int(args.live_seconds * SR))
        sf.write(recording, wav.astype(np.float32), SR, subtype="PCM_16")
        with BackgroundServer(create_app(models, config)) as server:
            workers = server.app.state.omnispeech.workers
            load_level(server.url, 1, 2.0)  # burn-in: first calls allocate and compile
            load = [load_level(server.url, c, args.seconds) for c in (1, 4, 16)]
            live = live_latency(server.url, recording, models.asr, 1 if args.quick else 3)
            long_config = ServerConfig(workers=1, max_speech_seconds=60.0, voices_dir=folder)
            with BackgroundServer(create_app(models, long_config)) as long_server:
                gone_workers = long_server.app.state.omnispeech.workers
                gone = disconnect_release(long_server.url, gone_workers, 2 if args.quick else 5)
            assert workers.busy == 0
    result = {
        "machine": machine_info(),
        "tts_parameters": _parameters(models.tts),
        "asr_parameters": _parameters(models.asr),
        "workers": args.workers,
        "seconds": args.seconds,
        "speech_seconds": args.speech_seconds,
        "load": load,
        "live": live,
        "disconnect": gone,
    }
    print_json(result)
    if not args.quick:
        write_section("server", report(result), processor=processor_line(result["machine"]))


if __name__ == "__main__":
    sys.exit(main())
