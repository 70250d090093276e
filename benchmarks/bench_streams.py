"""Streams per machine at real time: TTS and ASR over batches of 1, 4 and 16 independent
requests, 2 CPU threads.

1. **TTS at the Qwen3-TTS-12Hz-0.6B shapes** (random weights, omnispeech only): the cost of one
   80 ms frame for ``B`` streams stepped together, talker + code predictor (``Talker.start`` /
   ``sample_frame`` / ``advance`` with ``B`` rows, one sampling generator per row), int8 and
   int4 weights with bfloat16 activations, and int4 with float32 ones (``--int4``'s
   default); plus one streaming Code2Wav push of one frame per stream at the released 12 Hz
   tokenizer decoder's shapes (float32). Streams at real time =
   ``B * 0.08 s`` / (frame cost + push cost).
2. **A trained TTS model** (default: the bundled one; ``--tts-model`` for another folder):
   16 held-out sentences said with ``TTS.synthesize_batch`` in batches of ``B``, each its own
   seed, voice cloned from ``examples/austen.wav``; streams at real time = speech seconds /
   wall seconds.
3. **The bundled ASR** (``--asr-model`` for another): 16 held-out utterances transcribed with
   ``ASR.transcribe_batch`` in batches of ``B``; streams at real time = audio seconds / wall
   seconds.

A figure above ``B`` means the batch could grow; below 1, not even one stream keeps up.

Run from the repository root::

    python -m benchmarks.bench_streams --manifest corpus/manifest.jsonl
    python -m benchmarks.bench_streams --manifest corpus/manifest.jsonl --quick   # prints only
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    machine_info,
    machine_line,
    print_json,
    print_processor,
    processor_line,
    set_threads,
    sig3,
    time_call,
    today,
    write_section,
)
from benchmarks.qwen_tts_ref import DECODER_CONFIG
from benchmarks.qwen_tts_talker_ref import ROLE, TALKER_06B

THREADS = 2
FRAME_SECONDS = 0.08
ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "examples" / "austen.wav"


@dataclasses.dataclass(frozen=True)
class Settings:
    batches: tuple[int, ...]
    short: int  # frames of the shorter generation (the prompt's cost cancels out)
    long: int  # frames of the longer one
    repeats: int  # timed runs of each length, median
    pushes: int  # timed Code2Wav pushes, median
    text_tokens: int


# Weights and activations: `omnispeech tts --int4` runs float32 activations (one stream takes
# the one-call kernels of the talker's step and the code predictor's frame); 16-bit
# activations are what `--dtype bfloat16` adds.
FORMATS = (
    ("int8", torch.bfloat16),
    ("int4", torch.bfloat16),
    ("int4", torch.float32),
)
FULL = Settings(batches=(1, 4, 16), short=2, long=8, repeats=3, pushes=8, text_tokens=24)
QUICK = Settings(batches=(1, 2), short=1, long=2, repeats=1, pushes=2, text_tokens=8)


# -- 1. the 0.6B shapes ------------------------------------------------------------------------
def talker_06b(seed: int = 0) -> Any:
    """omnispeech's talker at the 0.6B shapes with its own random weights; end-of-speech is
    made impossible (its codec-head row zeroed) so every stream makes every frame."""
    from omnispeech.talker import Talker
    from omnispeech.talker.config import spec_from_qwen3_tts

    torch.manual_seed(seed)
    talker = Talker(spec_from_qwen3_tts({"talker_config": TALKER_06B})).eval()
    with torch.no_grad():
        talker.codec_head.weight[TALKER_06B["codec_eos_token_id"]].zero_()
    return talker


def _prompt(talker: Any, text_tokens: int, dtype: torch.dtype) -> torch.Tensor:
    """An x-vector cloning prompt ``[1, L, hidden]`` for random text, streaming arrangement."""
    from omnispeech.pipelines.tts_prompt import VoicePrompt, build_prompt

    g = torch.Generator().manual_seed(0)
    text = torch.randint(1000, 150000, (text_tokens,), generator=g).tolist()
    voice = VoicePrompt(speaker=(torch.randn(1024, generator=g) * 0.5).to(dtype))
    return build_prompt(talker, ROLE, text, "english", voice, "stream").embeds


def _generate(talker: Any, prompt: torch.Tensor, batch: int, frames: int) -> None:
    """``frames`` frames for ``batch`` streams stepped together, each its own generator."""
    from omnispeech.talker import GenerationConfig

    gen = GenerationConfig()
    x = prompt.expand(batch, -1, -1).contiguous()
    gens = [torch.Generator().manual_seed(b) for b in range(batch)]
    state = talker.start(x, x.shape[1] + frames + 2)
    text = talker.embed_text(torch.zeros(batch, 1, dtype=torch.long))[:, 0]
    for _ in range(frames):
        codes = talker.sample_frame(state, gen, gens, allow_end=False)
        talker.advance(state, codes, text)


def frame_cost(talker: Any, prompt: torch.Tensor, batch: int, s: Settings) -> float:
    """Seconds per frame for ``batch`` streams: (long - short) / extra frames."""
    short = time_call(lambda: _generate(talker, prompt, batch, s.short), s.repeats).median
    long = time_call(lambda: _generate(talker, prompt, batch, s.long), s.repeats).median
    return max(long - short, 0.0) / (s.long - s.short)


def push_cost(decoder: Any, batch: int, s: Settings) -> float:
    """Seconds of one streaming Code2Wav push of one frame per stream (median, after a few
    frames of history so the sliding windows are in their steady state)."""
    cfg = decoder.cfg
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(
        0, cfg.codebook_size, (batch, cfg.num_quantizers, 4 + s.pushes), generator=g
    )
    times = []
    with torch.inference_mode(), decoder.streaming(batch):
        decoder.push(codes[..., :4])
        for t in range(4, 4 + s.pushes):
            start = time.perf_counter()
            decoder.push(codes[..., t : t + 1])
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_06b(s: Settings) -> list[dict[str, Any]]:
    """Rows per weight format and batch: frame cost, push cost, streams at real time."""
    from omnispeech.vocoder import Code2Wav, Code2WavConfig

    decoder = Code2Wav(Code2WavConfig.from_tts_tokenizer({"decoder_config": DECODER_CONFIG}))
    decoder.eval()
    pushes = {b: push_cost(decoder, b, s) for b in s.batches}
    del decoder
    rows = []
    for fmt, dtype in FORMATS:
        talker = talker_06b().to(dtype)
        if fmt == "int8":
            talker.quantize_int8()
        else:
            talker.quantize_int4()
        prompt = _prompt(talker, s.text_tokens, dtype)
        name = f"{fmt}+{str(dtype).removeprefix('torch.')}"
        for b in s.batches:
            print(f"  0.6B {name}, batch {b} ...", file=sys.stderr)
            frame = frame_cost(talker, prompt, b, s)
            total = frame + pushes[b]
            rows.append(
                {
                    "weights": name,
                    "batch": b,
                    "frame_s": frame,
                    "code2wav_push_s": pushes[b],
                    "streams_at_real_time": b * FRAME_SECONDS / total,
                }
            )
        del talker
    return rows


# -- 2. and 3. trained models ------------------------------------------------------------------
def _spread(entries: list[Any], n: int) -> list[Any]:
    """``n`` entries spread over the list (repeating when it is shorter)."""
    return [entries[(i * max(len(entries), 1)) // n % len(entries)] for i in range(n)]


def _display(model: str | None) -> str:
    """A model folder as the report names it: its last two path parts (or "bundled")."""
    return "bundled" if model is None else "/".join(Path(model).parts[-2:])


def bench_tts_model(model: str | None, entries: list[Any], s: Settings) -> list[dict[str, Any]]:
    """The same ``max(batches)`` requests at every batch size, in batches of that size."""
    from omnispeech.pipelines.tts import TTS

    tts = TTS.from_pretrained(model)
    voice = tts.voice(CLIP)
    tts.synthesize(entries[0].text, voice, language=entries[0].language, seed=0)  # warm-up
    chosen = _spread(entries, max(s.batches))
    rows = []
    for b in s.batches:
        print(f"  TTS {_display(model)}, batch {b} ...", file=sys.stderr)
        speech = wall = 0.0
        for i in range(0, len(chosen), b):
            part = chosen[i : i + b]
            start = time.perf_counter()
            with torch.inference_mode():
                audio = tts.synthesize_batch(
                    [e.text for e in part], [voice] * len(part), list(range(i, i + len(part))),
                    language=part[0].language,
                )  # fmt: skip
            wall += time.perf_counter() - start
            speech += sum(a.shape[0] for a in audio) / tts.sample_rate
        rows.append(
            {"batch": b, "speech_s": speech, "wall_s": wall, "streams_at_real_time": speech / wall}
        )
    return rows


def bench_asr_model(model: str | None, entries: list[Any], s: Settings) -> list[dict[str, Any]]:
    """The same ``max(batches)`` utterances at every batch size, in batches of that size."""
    from omnispeech.audio import load_audio
    from omnispeech.pipelines import ASR
    from omnispeech.pipelines.asr import SAMPLE_RATE

    asr = ASR.from_pretrained(model)
    asr.transcribe(entries[0].path, language=entries[0].language)  # warm-up
    wavs = [load_audio(e.path, SAMPLE_RATE) for e in _spread(entries, max(s.batches))]
    audio = sum(w.shape[0] for w in wavs) / SAMPLE_RATE
    rows = []
    for b in s.batches:
        print(f"  ASR {_display(model)}, batch {b} ...", file=sys.stderr)
        start = time.perf_counter()
        for i in range(0, len(wavs), b):
            asr.transcribe_batch(wavs[i : i + b], language=entries[0].language)
        wall = time.perf_counter() - start
        rows.append(
            {"batch": b, "audio_s": audio, "wall_s": wall, "streams_at_real_time": audio / wall}
        )
    return rows


# -- report ------------------------------------------------------------------------------------
def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"## Streams per machine at real time ({res['date']})",
        "",
        f"{machine_line(res['machine'])}; {THREADS} threads. Script: "
        "`benchmarks/bench_streams.py`. Streams at real time: how many independent streams "
        "this machine keeps at the pace of speech when it steps them together (above the "
        "batch: the batch could grow; below 1: not even one stream keeps up).",
        "",
        "Qwen3-TTS-12Hz-0.6B shapes, random weights: talker + code predictor per 80 ms frame "
        "for the whole batch, one streaming push of the 12 Hz decoder (float32, released "
        "shapes) per frame of every stream:",
        "",
        "| weights | batch | talker + MTP per frame | Code2Wav push | streams at real time |",
        "|---|---|---|---|---|",
    ]
    for r in res["tts_06b"]:
        lines.append(
            f"| {r['weights']} | {r['batch']} | {sig3(r['frame_s'] * 1e3)} ms "
            f"| {sig3(r['code2wav_push_s'] * 1e3)} ms | {r['streams_at_real_time']:.2f} |"
        )
    for key, title, unit in (
        ("tts_model", "TTS", "speech_s"),
        ("asr_model", "ASR", "audio_s"),
    ):
        part = res.get(key)
        if part is None:
            continue
        lines += [
            "",
            f"{title} `{part['model']}`, {part['what']}; the same requests at every "
            "batch size, in batches of that size:",
            "",
            "| batch | audio | wall | streams at real time |",
            "|---|---|---|---|",
        ]
        for r in part["rows"]:
            lines.append(
                f"| {r['batch']} | {r[unit]:.1f} s | {sig3(r['wall_s'])} s "
                f"| {r['streams_at_real_time']:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    print_processor()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, help="held-out sentences and utterances")
    parser.add_argument("--tts-model", default=None, help="TTS folder (default: bundled)")
    parser.add_argument("--asr-model", default=None, help="ASR folder (default: bundled)")
    parser.add_argument("--language", default="en", help="language of the held-out entries")
    parser.add_argument("--quick", action="store_true", help="smoke run; no RESULTS.md")
    args = parser.parse_args(argv)
    s = QUICK if args.quick else FULL
    set_threads(THREADS)
    res: dict[str, Any] = {"benchmark": "streams", "date": today(), "machine": machine_info()}
    res["tts_06b"] = bench_06b(s)
    if args.manifest is not None:
        from omnispeech.eval import read_manifest

        entries = read_manifest(args.manifest, "test", [args.language])
        what = f"{args.language} test sentences of `{args.manifest.name}`"
        from omnispeech.registry import bundled_model

        if args.tts_model is None and bundled_model("tts") is None:
            print("  no bundled TTS model: pass --tts-model to measure one", file=sys.stderr)
        else:
            res["tts_model"] = {
                "model": _display(args.tts_model),
                "what": f"`TTS.synthesize_batch` of {what}, voice from `examples/austen.wav`",
                "rows": bench_tts_model(args.tts_model, entries, s),
            }
        res["asr_model"] = {
            "model": _display(args.asr_model),
            "what": f"`ASR.transcribe_batch` of {what}",
            "rows": bench_asr_model(args.asr_model, entries, s),
        }
    print_json(res)
    if not args.quick:
        write_section("streams", markdown(res), processor=processor_line(res["machine"]))


if __name__ == "__main__":
    main()
