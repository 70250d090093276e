"""Talker + code predictor at the Qwen3-TTS-12Hz-0.6B shapes: omnispeech against qwen-tts.

CPU, random weights shared by both implementations (the reference's, loaded into omnispeech's
``Talker``), voice cloning with a speaker vector, streaming-text arrangement, sampling on
(the released settings), 2 threads. Measured in one run:

1. per-frame latency of talker + MTP (codebook 0 and the 15 residual codebooks of one frame):
   the difference between generating ``long`` and ``short`` frames after the same prompt,
   divided by the extra frames, so the prompt's cost cancels out. float32 and bfloat16 for
   both; int4 weight-only (float32 and bfloat16 activations) timed alternately with qwen-tts
   float32; float16, int8 and ATen's int4 kernel for omnispeech only;
2. first-packet latency of an utterance of ``packet_frames`` frames: qwen-tts returns audio
   only after generating every frame and decoding them all; omnispeech streams, so its first
   packet is the prompt, one frame and one streaming Code2Wav step. Both decoders are the
   released 12 Hz tokenizer's decoder (random weights);
3. omnispeech's steady streaming cost per frame: talker + MTP + one Code2Wav push;
4. the bandwidth at which this CPU streams float32 weights through a matrix-vector product,
   the bound of a frame's cost (every weight is read for one token).

Both implementations get the same burn-in run and are timed alternately, round by round
(which one goes first alternates too), so background load hits both alike. Before timing,
both generate a few frames greedily from the same prompt, and the codes must be identical.

End-of-speech is made impossible in the shared weights (its codec-head row is zeroed, below
every top-50 logit), so both generate exactly the requested number of frames.

Side environment: the one of ``bench_codec.py`` (qwen-tts 0.1.1, transformers 4.57.3,
omnispeech installed with ``--no-deps``). Run from the repository root::

    /tmp/venv-qwentts/bin/python -m benchmarks.bench_tts          # writes the tts section
    /tmp/venv-qwentts/bin/python -m benchmarks.bench_tts --quick  # smoke run, prints only
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import importlib.metadata
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    gemv_bandwidth,
    machine_info,
    machine_line,
    print_json,
    print_processor,
    processor_line,
    set_threads,
    sig3,
    time_call,
    time_pair,
    today,
    write_section,
)
from benchmarks.qwen_tts_ref import build_models
from benchmarks.qwen_tts_talker_ref import TalkerPair, tts_model_06b
from omnispeech.core.quant import DEFAULT_GROUP_SIZE
from omnispeech.kernels import use_backend

THREADS = 2
FRAME_SECONDS = 0.08


@dataclasses.dataclass(frozen=True)
class Settings:
    short: int  # frames of the shorter generation
    long: int  # frames of the longer one
    repeats: int  # timed rounds; one burn-in round before them, for both implementations
    packet_frames: int  # utterance length for the first-packet comparison
    text_tokens: int
    check_frames: int  # greedy frames that must agree before anything is timed


FULL = Settings(short=2, long=10, repeats=5, packet_frames=40, text_tokens=24, check_frames=6)
QUICK = Settings(short=1, long=3, repeats=1, packet_frames=4, text_tokens=8, check_frames=2)
WARMUP = 1


def _ref_generate(ref: Any, prompt: dict[str, Any], frames: int, **sampling: Any) -> torch.Tensor:
    """qwen-tts ``generate`` for ``frames`` whole frames -> codes ``[frames, 16]``."""
    codes, _ = ref.generate(**prompt, max_new_tokens=frames + 1, **sampling)
    out = codes[0]
    if out.shape[0] != frames:
        raise RuntimeError(f"the reference made {out.shape[0]} frames, not {frames}")
    return out


def _ours_generate(talker: Any, prompt: Any, frames: int, seed: int = 0) -> torch.Tensor:
    from omnispeech.talker import GenerationConfig

    gen = GenerationConfig()
    device = prompt.embeds.device
    generator = torch.Generator(device).manual_seed(seed)
    state = talker.start(prompt.embeds, prompt.embeds.shape[1] + frames + 2)
    text = talker.embed_text(torch.tensor([prompt.trailing[:1] or [0]], device=device))[:, 0]
    out = []
    for _ in range(frames):
        codes = talker.sample_frame(state, gen, generator)
        out.append(codes)
        talker.advance(state, codes, text)
    return torch.cat(out)


def _ours_greedy(talker: Any, prompt: Any, frames: int) -> torch.Tensor:
    """omnispeech's greedy frames with the trailing text fed as the reference feeds it: one
    token per frame, then the end of text, then padding -> codes ``[frames, 16]``."""
    from omnispeech.talker import GenerationConfig

    ids = talker.spec.tokens
    feed = prompt.trailing + ([] if prompt.end_in_prompt else [ids.tts_eos])
    state = talker.start(prompt.embeds, prompt.embeds.shape[1] + frames + 2)
    out = []
    for n in range(frames):
        codes = talker.sample_frame(state, GenerationConfig.greedy())
        out.append(codes)
        token = feed[n] if n < len(feed) else ids.tts_pad
        text = talker.embed_text(torch.tensor([[token]], device=prompt.embeds.device))[:, 0]
        talker.advance(state, codes, text)
    return torch.cat(out)


def check_outputs(pair: TalkerPair, s: Settings) -> dict[str, Any]:
    """Greedy codes of both implementations, float32, same prompt: they must be identical,
    or the timings compare different work."""
    with torch.inference_mode():
        ref = _ref_generate(
            pair.ref, pair.ref_prompt(torch.float32), s.check_frames,
            do_sample=False, subtalker_dosample=False,
        )  # fmt: skip
        ours = _ours_greedy(pair.ours, pair.our_prompt(torch.float32), s.check_frames)
    same = torch.equal(ref.cpu(), ours.cpu())
    return {"frames": s.check_frames, "same_greedy_codes": same}


def _frame_costs(
    ref_generate: Callable[[int], object], our_generate: Callable[[int], object], s: Settings
) -> tuple[float, float]:
    """Seconds per extra frame, (reference, omnispeech): ``generate(long)`` minus
    ``generate(short)``, medians; the two implementations alternate run by run."""
    ref_short, our_short = time_pair(
        lambda: ref_generate(s.short), lambda: our_generate(s.short), s.repeats, WARMUP
    )
    ref_long, our_long = time_pair(
        lambda: ref_generate(s.long), lambda: our_generate(s.long), s.repeats, WARMUP
    )
    extra = s.long - s.short
    return (
        (ref_long.median - ref_short.median) / extra,
        (our_long.median - our_short.median) / extra,
    )


def _our_frame_cost(generate: Callable[[int], object], s: Settings) -> float:
    """Seconds per extra frame of omnispeech alone (settings the reference does not have)."""
    short = time_call(lambda: generate(s.short), s.repeats, warmup=WARMUP)
    long = time_call(lambda: generate(s.long), s.repeats, warmup=WARMUP)
    return (long.median - short.median) / (s.long - s.short)


# Rows timed alternately with qwen-tts float32 (the 4-bit goal is a ratio to it); the other
# omnispeech-only rows are divided by the float32 row's reference median.
PAIRED = ("int4+float32", "int4+bfloat16")


def bench_frames(pair: TalkerPair, s: Settings) -> dict[str, Any]:
    """Per-frame talker + MTP latency for each dtype (and int8 for omnispeech)."""
    ref, ours = pair.ref, pair.ours
    out: dict[str, Any] = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        ref.to(dtype)
        ours.to(dtype)
        rp, op = pair.ref_prompt(dtype), pair.our_prompt(dtype)
        print(f"  {name}: reference and omnispeech, alternating ...", file=sys.stderr)
        rf, of = _frame_costs(
            functools.partial(_ref_generate, ref, rp),
            functools.partial(_ours_generate, ours, op),
            s,
        )
        out[name] = {"reference_s": rf, "omnispeech_s": of, "speedup": rf / of}
    # int4 goes first, on copies: quantizing replaces the layers, and int8 takes the originals.
    # The "(ATen)" rows store ATen's int4 layout (what runs where our kernel cannot), so the
    # two kernels are compared in the same run.
    for name, dtype, quant in (
        ("float16", torch.float16, None),
        ("int4+float32", torch.float32, "int4"),
        ("int4+float32 (ATen)", torch.float32, "int4-aten"),
        ("int4+bfloat16", torch.bfloat16, "int4"),
        ("int4+bfloat16 (ATen)", torch.bfloat16, "int4-aten"),
        ("int8+bfloat16", torch.bfloat16, "int8"),
    ):
        ours.to(dtype)
        model = copy.deepcopy(ours) if quant and quant.startswith("int4") else ours
        if quant == "int4":
            model.quantize_int4()
        elif quant == "int4-aten":
            with use_backend("reference"):  # our kernel unavailable: ATen's layout is stored
                model.quantize_int4()
        elif quant == "int8":
            model.quantize_int8()
        ours_generate = functools.partial(_ours_generate, model, pair.our_prompt(dtype))
        if name in PAIRED:
            # The goal's ratio: timed alternately with qwen-tts float32, round by round, like
            # the float rows, so a slow spell of this shared machine hits both alike.
            print(f"  {name}: omnispeech and reference float32, alternating ...", file=sys.stderr)
            ref.to(torch.float32)
            ref_generate = functools.partial(_ref_generate, ref, pair.ref_prompt(torch.float32))
            rf, of = _frame_costs(ref_generate, ours_generate, s)
        else:
            print(f"  {name}: omnispeech ...", file=sys.stderr)
            rf, of = out["float32"]["reference_s"], _our_frame_cost(ours_generate, s)
        out[name] = {
            "omnispeech_s": of,
            "reference_float32_s": rf,
            "paired": name in PAIRED,
            "speedup_vs_reference_float32": rf / of,
            "speedup_vs_reference_bfloat16": out["bfloat16"]["reference_s"] / of,
        }
        del model
    ref.to(torch.float32)
    return out


# Bytes read per weight in each format: int8 adds a 16-bit scale per row (negligible), int4 a
# 16-bit scale and offset per group of DEFAULT_GROUP_SIZE columns (0.5 bit per weight at 64).
BYTES_PER_WEIGHT = {
    "float32": 4.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "int8+bfloat16": 1.0,
    "int4+float32": 0.5 + 4 / DEFAULT_GROUP_SIZE,
    "int4+float32 (ATen)": 0.5 + 4 / DEFAULT_GROUP_SIZE,
    "int4+bfloat16": 0.5 + 4 / DEFAULT_GROUP_SIZE,
    "int4+bfloat16 (ATen)": 0.5 + 4 / DEFAULT_GROUP_SIZE,
}


def bandwidth_bound_s(weights: int, fmt: str, gb_per_s: float) -> float:
    """Seconds to stream one frame's weights in ``fmt`` at the measured bandwidth."""
    return weights * BYTES_PER_WEIGHT[fmt] / (gb_per_s * 1e9)


def bench_first_packet(pair: TalkerPair, codec: dict[str, Any], s: Settings) -> dict[str, Any]:
    """Seconds until the first audio exists, float32, utterance of ``packet_frames`` frames."""
    from omnispeech.talker import GenerationConfig

    ref, ours = pair.ref, pair.ours
    rp = pair.ref_prompt(torch.float32)
    ref_decoder, our_decoder = codec["reference"], codec["omnispeech"]

    def reference() -> None:
        codes = _ref_generate(ref, rp, s.packet_frames)
        ref_decoder.decode(codes[None])

    def omnispeech() -> None:
        op = pair.our_prompt(torch.float32)
        state = ours.start(op.embeds, op.embeds.shape[1] + s.packet_frames + 2)
        frame = ours.sample_frame(state, GenerationConfig(), torch.Generator().manual_seed(0))
        with our_decoder.streaming(1):
            chunk = our_decoder.push(frame[:, :, None])
        assert int(chunk.lengths[0]) > 0

    print("  first packet: reference and omnispeech, alternating ...", file=sys.stderr)
    r, o = time_pair(reference, omnispeech, s.repeats, WARMUP)
    return {
        "frames": s.packet_frames,
        "reference_s": r.median,
        "omnispeech_s": o.median,
        "speedup": r.median / o.median,
    }


def bench_stream_step(pair: TalkerPair, codec: dict[str, Any], s: Settings) -> dict[str, Any]:
    """omnispeech float32: one streamed frame = talker + MTP + one Code2Wav push."""
    from omnispeech.talker import GenerationConfig

    ours, decoder = pair.ours, codec["omnispeech"]
    op = pair.our_prompt(torch.float32)
    gen, g = GenerationConfig(), torch.Generator().manual_seed(0)
    text = ours.embed_text(torch.tensor([[0]]))[:, 0]
    steps = s.long
    with torch.inference_mode(), decoder.streaming(1):
        state = ours.start(op.embeds, op.embeds.shape[1] + steps + 4)

        def step() -> None:
            codes = ours.sample_frame(state, gen, g)
            decoder.push(codes[:, :, None])
            ours.advance(state, codes, text)

        t = time_call(step, steps)
    return {"seconds_per_frame": t.median, "real_time_factor": t.median / FRAME_SECONDS}


def bench_gpu(pair: TalkerPair, s: Settings) -> dict[str, Any]:
    """On a CUDA GPU, bfloat16: per-frame latency of the reference, of omnispeech's reference
    loop, and of omnispeech's fixed-shape step replayed as CUDA graphs."""
    from omnispeech.talker import GenerationConfig
    from omnispeech.talker.graph import GraphSession

    dtype, frames = torch.bfloat16, 50
    ref, ours = pair.ref.to("cuda", dtype), pair.ours.to("cuda", dtype)
    rp = pair.ref_prompt(dtype)
    rp["voice_clone_prompt"]["ref_spk_embedding"] = [
        e.cuda() for e in rp["voice_clone_prompt"]["ref_spk_embedding"]
    ]
    rp["input_ids"] = [i.cuda() for i in rp["input_ids"]]

    def synced(fn: Callable[[int], object]) -> Callable[[int], object]:
        def run(n: int) -> object:
            out = fn(n)
            torch.cuda.synchronize()
            return out

        return run

    op = pair.our_prompt(dtype)  # built on the talker's device
    ref_s, eager_s = _frame_costs(
        synced(functools.partial(_ref_generate, ref, rp)),
        synced(functools.partial(_ours_generate, ours, op)),
        s,
    )
    gen = GenerationConfig()
    g = torch.Generator("cuda").manual_seed(0)
    with torch.inference_mode():
        state = ours.start(op.embeds, op.embeds.shape[1] + frames + 8)
        session = GraphSession(ours, state, gen)
        times = []
        for _ in range(frames):
            torch.cuda.synchronize()
            start = time.perf_counter()
            session.fill_noise(g)
            codes = session.sample()
            session.advance()
            int(codes[0, 0])  # the host reads the frame, as a streaming caller does
            times.append(time.perf_counter() - start)
    graph_s = sorted(times[5:])[len(times[5:]) // 2]
    ours.to("cpu", torch.float32)
    ref.to("cpu", torch.float32)
    return {
        "device": torch.cuda.get_device_name(),
        "reference_s": ref_s,
        "omnispeech_eager_s": eager_s,
        "omnispeech_graph_s": graph_s,
        "speedup_graph": ref_s / graph_s,
    }


def weights_per_frame(talker: Any) -> dict[str, int]:
    """Weights read per generated frame: talker layers + codec head once, the code predictor's
    layers and one head for each of its steps."""
    talker_w = sum(p.numel() for p in talker.model.layers.parameters())
    talker_w += talker.codec_head.weight.numel()
    cp = talker.code_predictor
    step = sum(p.numel() for p in cp.model.layers.parameters()) + cp.lm_head[0].weight.numel()
    steps = cp.num_code_groups - 1
    return {"talker": talker_w, "code_predictor_step": step, "per_frame": talker_w + steps * step}


def markdown(res: dict[str, Any]) -> str:
    f = res["frames"]
    w = res["weights"]
    p = res["first_packet"]
    st = res["stream_step"]
    bw = res["bandwidth"]["gb_per_s"]
    settings = res["settings"]
    lines = [
        "## TTS talker + MTP (Qwen3-TTS-12Hz-0.6B shapes)",
        "",
        f"{res['date']}; {machine_line(res['machine'])}; qwen-tts {res['versions']['qwen-tts']} "
        f"with transformers {res['versions']['transformers']}. Random weights shared by both "
        "(the reference's state dict loaded into omnispeech's Talker), x-vector cloning, "
        "streaming-text arrangement, sampling with the released settings. "
        "Script: `benchmarks/bench_tts.py`.",
        "",
        f"Outputs: greedy, float32, both made the same codes for {res['check']['frames']} "
        "frames from the same prompt (checked before timing). Timing: one burn-in round for "
        f"both, then the median of {settings['repeats']} rounds in which the two "
        "implementations alternate (and take turns going first), so background load on this "
        "shared machine hits both alike.",
        "",
        "Per-frame latency of talker + MTP (one 80 ms frame: codebook 0 and the 15 residual "
        "codebooks), from the difference of two generation lengths after the same prompt:",
        "",
        "| weights / activations | qwen-tts | omnispeech | speed-up | memory bound |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in ("float32", "bfloat16"):
        r = f[name]
        bound = bandwidth_bound_s(w["per_frame"], name, bw)
        lines.append(
            f"| {name} | {sig3(r['reference_s'])} s | {sig3(r['omnispeech_s'])} s | "
            f"{r['speedup']:.1f}x | {sig3(bound)} s |"
        )
    for name in (
        "float16",
        "int8+bfloat16",
        "int4+float32",
        "int4+float32 (ATen)",
        "int4+bfloat16",
        "int4+bfloat16 (ATen)",
    ):
        r = f.get(name)
        if r is None:  # an older result without this row
            continue
        bound = bandwidth_bound_s(w["per_frame"], name, bw)
        label = name.replace(" (ATen)", ", ATen kernel")
        if r.get("paired"):
            reference = f"float32 in the same rounds: {sig3(r['reference_float32_s'])} s"
        else:
            label += " (omnispeech only)"
            reference = "-"
        lines.append(
            f"| {label} | {reference} | {sig3(r['omnispeech_s'])} s | "
            f"{r['speedup_vs_reference_float32']:.1f}x vs qwen-tts float32, "
            f"{r['speedup_vs_reference_bfloat16']:.1f}x vs bfloat16 | {sig3(bound)} s |"
        )
    lines += [
        "",
        "Memory bound: the frame's weights in that format (int4: 4-bit values plus a 16-bit "
        f"scale and offset per {DEFAULT_GROUP_SIZE} columns) read once at the bandwidth "
        "measured below; a frame cannot be faster than reading its weights. int4 rows run "
        "omnispeech's kernel (`omnispeech/kernels/numba_int4.py`: activations rounded to int8 "
        "per group, integer products); the (ATen) rows store the layout of ATen's CPU int4 "
        "kernel instead, which runs where ours cannot (no AVX2, other group sizes). The "
        f"{' and '.join(PAIRED)} rows alternate with qwen-tts float32 round by round (its "
        "median in those rounds is in the qwen-tts column); the other omnispeech-only rows "
        "are divided by the float32 row's reference median. int4 with float32 activations "
        "runs the talker's decoding step in one kernel call "
        "(`omnispeech/kernels/numba_int4_step.py`) and the code predictor's whole frame in "
        "another (`omnispeech/kernels/numba_int4_predict.py`).",
    ]
    lines += [
        "",
        f"First-packet latency, float32, an utterance of {p['frames']} frames "
        f"({p['frames'] * FRAME_SECONDS:.1f} s): qwen-tts returns audio after generating and "
        f"decoding all of it, {sig3(p['reference_s'])} s; omnispeech streams its first packet "
        f"(prompt, one frame, one Code2Wav step) after {sig3(p['omnispeech_s'])} s: "
        f"**{p['speedup']:.0f}x** sooner (the gap grows with the utterance).",
        "",
        f"omnispeech streaming, float32: {sig3(st['seconds_per_frame'])} s per 80 ms frame "
        f"(talker + MTP + Code2Wav push), real-time factor {st['real_time_factor']:.2f}.",
        "",
        f"Why equal precision gives about equal speed: one frame reads every talker weight once "
        f"and every code-predictor weight 15 times, {w['per_frame'] / 1e9:.2f} G weights "
        f"({w['per_frame'] * 4 / 1e9:.1f} GB in float32); at the {sig3(bw)} GB/s this CPU "
        "streamed float32 weights through a matrix-vector product in this run, that alone "
        f"takes {sig3(w['per_frame'] * 4 / (bw * 1e9))} s, so both implementations sit at the "
        "memory bound and the per-frame gain has to come from reading fewer bytes (16-bit: "
        "half, int8: a quarter). Streaming is where the large gain is: audio starts after one "
        "frame instead of after the whole utterance.",
    ]
    gpu = res.get("gpu")
    if gpu is None:
        lines += ["", "GPU: not measured (no CUDA device in this run)."]
    elif "error" in gpu:
        lines += ["", f"GPU: failed ({gpu['error']})."]
    else:
        lines += [
            "",
            f"GPU ({gpu['device']}, bfloat16), per-frame latency: qwen-tts "
            f"{sig3(gpu['reference_s'] * 1e3)} ms, omnispeech eager "
            f"{sig3(gpu['omnispeech_eager_s'] * 1e3)} ms, omnispeech CUDA graphs "
            f"{sig3(gpu['omnispeech_graph_s'] * 1e3)} ms ({gpu['speedup_graph']:.1f}x).",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    print_processor()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run; no RESULTS.md")
    args = parser.parse_args(argv)
    s = QUICK if args.quick else FULL
    threads = set_threads(THREADS)
    print(f"torch.set_num_threads({THREADS}) -> {threads} threads", file=sys.stderr)
    results: dict[str, Any] = {
        "benchmark": "tts",
        "date": today(),
        "machine": machine_info(),
        "versions": {
            d: importlib.metadata.version(d) for d in ("qwen-tts", "transformers", "omnispeech")
        },
        "settings": {**dataclasses.asdict(s), "quick": args.quick},
    }
    t0 = time.perf_counter()
    pair = tts_model_06b(s.text_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        from omnispeech.vocoder import Code2Wav

        ref_codec, _ = build_models(Path(tmp))
        codec = {"reference": ref_codec, "omnispeech": Code2Wav.from_pretrained(tmp)}
    print(f"models built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    results["check"] = check_outputs(pair, s)
    if not results["check"]["same_greedy_codes"]:
        print_json(results)
        raise SystemExit("the two implementations made different greedy codes: not timed")
    results["bandwidth"] = gemv_bandwidth()
    results["weights"] = weights_per_frame(pair.ours)
    results["first_packet"] = bench_first_packet(pair, codec, s)
    results["stream_step"] = bench_stream_step(pair, codec, s)
    if torch.cuda.is_available():
        print("GPU ...", file=sys.stderr)
        try:
            results["gpu"] = bench_gpu(pair, s)
        except Exception as exc:  # noqa: BLE001 - keep the CPU results whatever happens here
            results["gpu"] = {"error": f"{type(exc).__name__}: {exc}"}
    results["frames"] = bench_frames(pair, s)
    results["total_s"] = time.perf_counter() - t0
    print_json(results)
    if not args.quick:
        write_section("tts", markdown(results), processor=processor_line(results["machine"]))


if __name__ == "__main__":
    main()
