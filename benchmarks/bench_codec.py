"""Codec encoder at the released Qwen3-TTS-Tokenizer-12Hz shapes: omnispeech against qwen-tts.

Measures, CPU float32, random weights shared by both implementations:

1. encoding 10 s and 60 s of speech-like audio (batch 1): time, real-time factor, speed-up,
   and how far the codes (and the latent before quantization) agree;
2. a batch of four 10 s clips;
3. attention over more than the configured window (250 frames at 25 Hz, i.e. 10 s): the
   reference's encoder transformer with its default attention (SDPA) and with eager attention,
   against omnispeech's attending to all earlier frames and to the last 250 only;
4. peak resident memory of one 60 s encode, each implementation in a fresh process.

The reference is ``Qwen3TTSTokenizerV2Model`` of qwen-tts 0.1.1, which pins transformers 4.57.3
(the project's tests use transformers 5.x), so this benchmark runs in a side environment that
holds both it and omnispeech (``pip install --no-deps qwen-tts`` because its dependency list
pulls a torchaudio that does not work with this torch; omnispeech never imports transformers)::

    python3 -m venv /tmp/venv-qwentts
    /tmp/venv-qwentts/bin/pip install torch==2.13.0        # the CPU wheel here
    /tmp/venv-qwentts/bin/pip install transformers==4.57.3 numpy safetensors soundfile
    /tmp/venv-qwentts/bin/pip install --no-deps qwen-tts==0.1.1
    /tmp/venv-qwentts/bin/pip install soxr tokenizers click tqdm numba librosa
    /tmp/venv-qwentts/bin/pip install --no-deps -e .

Run from the repository root::

    /tmp/venv-qwentts/bin/python -m benchmarks.bench_codec          # writes the codec section
    /tmp/venv-qwentts/bin/python -m benchmarks.bench_codec --quick  # smoke run, prints only

Only the two 12 Hz module files of qwen-tts are imported (its package ``__init__`` imports the
25 Hz tokenizer, which needs torchaudio).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    Timing,
    machine_info,
    machine_line,
    print_json,
    print_processor,
    processor_line,
    set_threads,
    sig3,
    time_pair,
    today,
    write_section,
)
from benchmarks.qwen_tts_ref import (
    HOP,
    SAMPLE_RATE,
    WINDOW,
    build_models,
    encode_reference,
    load_reference,
    reference_latent,
    speech_like,
)

THREADS = 2
SEANET_HOP = 960  # samples per frame of the encoder transformer (25 Hz)
COMMAND = "/tmp/venv-qwentts/bin/python -m benchmarks.bench_codec"


@dataclasses.dataclass(frozen=True)
class Settings:
    seconds: tuple[int, ...]  # batch-1 clip lengths; the last one exceeds the window
    batch: int
    batch_seconds: int
    warmup: int
    repeats: int
    long_repeats: int  # for clips longer than 20 s
    memory: bool
    pushes: int  # timed 80 ms streaming pushes after each clip's history


FULL = Settings((10, 60), 4, 10, 1, 7, 3, True, 25)
QUICK = Settings((3, 12), 2, 3, 1, 1, 1, False, 3)


# -- measurements ------------------------------------------------------------------------------
def _agreement(ours: torch.Tensor, ref: torch.Tensor) -> dict[str, Any]:
    """Fraction of equal codes per codebook, overall, and where the first difference is."""
    same = ours == ref
    frames_differing = (~same).any(dim=1)  # [B, T]
    first = int(frames_differing.any(0).nonzero()[0]) if bool(frames_differing.any()) else None
    return {
        "shape": list(ours.shape),
        "identical": bool(same.all()),
        "fraction_equal": float(same.float().mean()),
        "fraction_equal_per_codebook": [float(x) for x in same.float().mean(dim=(0, 2))],
        "frames_with_a_difference": int(frames_differing.sum()),
        "first_differing_frame": first,
    }


def _latent_diff(ref: Any, ours: Any, wav: torch.Tensor) -> dict[str, Any] | None:
    """Largest |difference| of the latents before quantization (ours clip by clip, as its
    ``encode`` runs; the reference on the whole batch), over all code frames and over those
    whose 25 Hz transformer frames lie beyond the first window."""
    latent = getattr(getattr(ours, "net", None), "latent", None)
    if latent is None:  # not exposed by this version of omnispeech
        return None
    with torch.inference_mode():
        a = torch.cat([latent(clip[None, None]) for clip in wav])
        b = reference_latent(ref, wav[:, None])
    diff = (a - b).abs()
    inside = WINDOW * SEANET_HOP // HOP  # code frames 0 .. inside-1 see at most 250 frames
    after = diff[..., inside:]
    return {
        "max_abs_diff": float(diff.max()),
        "max_abs_latent": float(b.abs().max()),
        "max_abs_diff_after_window": float(after.max()) if after.numel() else None,
    }


def bench_clip(
    ref: Any, ours: Any, wav: torch.Tensor, s: Settings, keep: dict[str, torch.Tensor]
) -> dict[str, Any]:
    """Time and compare both implementations on ``wav [B, S]`` (interleaved runs); the codes
    of both are left in ``keep``."""
    b, n = wav.shape
    seconds = n / SAMPLE_RATE
    repeats = s.long_repeats if seconds > 20 else s.repeats
    out: dict[str, torch.Tensor] = {}
    t_ours, t_ref = time_pair(
        lambda: out.__setitem__("ours", ours.encode(wav[:, None])[0]),
        lambda: out.__setitem__("ref", encode_reference(ref, wav)),
        repeats,
        s.warmup,
    )
    keep.update(out)
    audio = b * seconds
    return {
        "batch": b,
        "seconds_per_clip": seconds,
        "frames": int(out["ours"].shape[-1]),
        "transformer_frames": -(-n // SEANET_HOP),
        "omnispeech": {**t_ours.to_dict(), "rtf": t_ours.median / audio},
        "qwen_tts": {**t_ref.to_dict(), "rtf": t_ref.median / audio},
        **_speedups(t_ours, t_ref),
        "codes": _agreement(out["ours"], out["ref"]),
        "latent": _latent_diff(ref, ours, wav),
    }


def bench_streaming(ours: Any, wav: torch.Tensor, pushes: int) -> dict[str, Any]:
    """Streaming encode of ``wav [1, S]``: everything but the last ``pushes`` frames is pushed
    untimed (the history), then the last frames one push of 80 ms each, timed; the streamed
    codes are checked against an offline encode of the whole clip."""
    history = wav.shape[-1] - pushes * HOP
    times, parts = [], []
    with torch.inference_mode(), ours.streaming(1):
        for start in range(0, history, 10 * SAMPLE_RATE):
            parts.append(ours.push(wav[:, None, start : min(start + 10 * SAMPLE_RATE, history)]))
        for k in range(pushes):
            piece = wav[:, None, history + k * HOP : history + (k + 1) * HOP]
            t0 = time.perf_counter()
            parts.append(ours.push(piece))
            times.append(time.perf_counter() - t0)
        parts.append(ours.flush())
    streamed = torch.cat(parts, dim=-1)
    offline = ours.encode(wav[:, None])[0]
    return {
        "history_seconds": history / SAMPLE_RATE,
        "pushes": pushes,
        "push_seconds_median": statistics.median(times),
        "push_seconds_max": max(times),
        "rtf": statistics.median(times) / (HOP / SAMPLE_RATE),
        "equals_offline": bool(torch.equal(streamed, offline)),
    }


def attention_check(
    ref: Any, ours: Any, wav: torch.Tensor, ref_codes: torch.Tensor
) -> dict[str, Any]:
    """Which attention the reference applies beyond the window, shown on the transformer alone.

    The reference's SEANet output of ``wav`` feeds: the reference transformer as built (its
    default attention), the same weights with eager attention, omnispeech's transformer as
    loaded (all earlier frames), and with ``attention_window=250``. The codes of a full encode
    with the windowed omnispeech model are compared with ``ref_codes``, the reference's.
    """
    from omnispeech.codec import CodecEncoder

    enc = ref.encoder
    res: dict[str, Any] = {
        "transformer_frames": -(-wav.shape[-1] // SEANET_HOP),
        "reference_attn_implementation": enc.config._attn_implementation,
        "reference_attention_class": type(enc.encoder_transformer.layers[0].self_attn).__name__,
        "reference_sliding_window": enc.config.sliding_window,
    }
    windowed = CodecEncoder(dataclasses.replace(ours.cfg, attention_window=WINDOW))
    windowed.load_state_dict(ours.state_dict())
    windowed.eval()
    eager_cfg = copy.deepcopy(enc.config)
    eager_cfg._attn_implementation = "eager"
    eager = type(enc.encoder_transformer)(eager_cfg).eval()
    eager.load_state_dict(enc.encoder_transformer.state_dict())
    with torch.inference_mode():
        frames = enc.encoder(wav[:, None]).transpose(1, 2)
        outs = {
            "reference_default": enc.encoder_transformer(frames, return_dict=True)[0],
            "reference_eager": eager(frames, return_dict=True)[0],
        }
        for name, model in (("omnispeech_all_earlier", ours), ("omnispeech_window_250", windowed)):
            transformer = getattr(getattr(model, "net", None), "encoder_transformer", None)
            if transformer is not None:
                outs[name] = transformer(frames)
        res["windowed_codes"] = _agreement(windowed.encode(wav[:, None])[0], ref_codes)
    base = outs["reference_default"]
    scale = float(base.abs().max())
    res["max_abs_transformer_output"] = scale
    for name, value in outs.items():
        if name != "reference_default":
            d = (value - base).abs()
            res[f"max_abs_diff_{name}"] = float(d.max())
            res[f"max_abs_diff_{name}_after_window"] = float(d[:, WINDOW:].max())
    return res


def _speedups(ours: Timing, ref: Timing) -> dict[str, float]:
    """qwen-tts time / omnispeech time: from the medians, from the minima, and the median of
    the ratios of the two runs of each round (the two runs of a round are adjacent, so they
    share the background load best; the steadiest figure on a busy machine)."""
    paired = statistics.median(r / o for o, r in zip(ours.runs, ref.runs, strict=True))
    return {
        "speedup": ref.median / ours.median,
        "speedup_min": ref.min / ours.min,
        "speedup_paired": paired,
    }


# -- peak memory (one fresh process per implementation) ----------------------------------------
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_memory_child(impl: str, folder: Path, seconds: float) -> None:
    """Load one implementation from ``folder``, encode 1 s (one-time initialisation), reset
    the peak-RSS mark, encode ``seconds`` once, print the peak and the resident size before
    that encode (MiB) as JSON."""
    import gc

    set_threads(THREADS)
    wav = speech_like(seconds, seed=int(seconds))
    if impl == "ours":
        from omnispeech.codec import CodecEncoder

        model = CodecEncoder.from_pretrained(folder)
        run = lambda x: model.encode(x[:, None])  # noqa: E731
    else:
        _, mdl_mod = load_reference()
        model = mdl_mod.Qwen3TTSTokenizerV2Model.from_pretrained(folder).eval()
        run = lambda x: encode_reference(model, x)  # noqa: E731
    with torch.inference_mode():
        run(wav[:, :SAMPLE_RATE])  # one-time initialisation (kernels, caches) stays outside
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status_kib("VmRSS")
    with torch.inference_mode():
        run(wav)
    peak = _status_kib("VmHWM")
    print(json.dumps({"rss_before_mib": before / 1024, "peak_mib": peak / 1024}))


def bench_memory(folder: Path, seconds: float) -> dict[str, Any] | None:
    if not Path("/proc/self/clear_refs").exists():
        return None
    res: dict[str, Any] = {"seconds": seconds}
    root = Path(__file__).resolve().parents[1]
    for impl in ("ours", "ref"):
        cmd = [sys.executable, "-m", "benchmarks.bench_codec", "--peak-memory", impl]
        cmd += ["--folder", str(folder), "--seconds", str(seconds)]
        proc = subprocess.run(
            cmd, cwd=root, capture_output=True, text=True, check=False, env=dict(os.environ)
        )
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1:]}
        d = json.loads(proc.stdout.strip().splitlines()[-1])
        d["encode_increase_mib"] = d["peak_mib"] - d["rss_before_mib"]
        res["omnispeech" if impl == "ours" else "qwen_tts"] = d
    return res


# -- report ------------------------------------------------------------------------------------
def _codes_text(c: dict[str, Any]) -> str:
    if c["identical"]:
        return "identical"
    per = c["fraction_equal_per_codebook"]
    return (
        f"{100 * c['fraction_equal']:.2f} % equal (codebook 0: {100 * per[0]:.2f} %, "
        f"worst {100 * min(per):.2f} %); first difference at frame {c['first_differing_frame']}"
    )


def markdown(res: dict[str, Any]) -> str:
    """The ``codec`` section of RESULTS.md."""
    rows = sorted(res["clips"], key=lambda r: (r["batch"], r["seconds_per_clip"]))

    def times(d: dict[str, Any]) -> str:
        return f"{sig3(d['median_s'])} s (min {sig3(d['min_s'])})"

    st = res["settings"]
    versions = res["versions"]
    lines = [
        "## Codec encoder: Qwen3-TTS-Tokenizer-12Hz shapes, CPU float32 — omnispeech vs qwen-tts",
        "",
        f"- Machine: {machine_line(res['machine'])}",
        f"- Date: {res['date']}",
        f"- Command: `{COMMAND}` (side environment: qwen-tts {versions['qwen-tts']} with "
        f"transformers {versions['transformers']}; recipe in the script's docstring)",
        "- Reference: `Qwen3TTSTokenizerV2Model.encode(wav [B, S], padding_mask)` of qwen-tts, as",
        "  its `Qwen3TTSTokenizer.encode` calls it (feature extraction excluded), attention",
        f"  `{res['attention']['reference_attn_implementation']}` (its default); ours",
        "  `CodecEncoder.from_pretrained(folder).encode(wav [B, 1, S])`.",
        "- Model: the released configuration (encoder = Mimi defaults: 8-layer transformer, window",
        "  250 at 25 Hz, 32 quantizers of which 16 are used; the published decoder config), random",
        "  weights identical in both: the reference is built, its encoder redrawn (convs/linears",
        "  N(0, 1/fan_in), LayerScale U(0.1, 1), codebooks scaled to their input, usage counts",
        "  U(0.5, 3)), saved with `save_pretrained` and loaded by omnispeech.",
        "- Audio: speech-like (harmonics of a wandering pitch, chirps, noise, syllable envelope",
        "  and pauses), seeded, 24 kHz.",
        f"- Timing: {st['warmup']} burn-in run, then the median (and min) of {st['repeats']} "
        f"timed runs ({st['long_repeats']} for 60 s) under `torch.inference_mode`, the two",
        "  implementations interleaved (alternating which goes first) so that background load",
        "  on this shared machine hits both alike (its load comes in bursts: absolute times",
        "  are noisy, the ratios much less). RTF = compute seconds / audio seconds (lower is",
        "  better), from the medians; speed-up = qwen-tts median / omnispeech median, then the",
        "  ratio of the minima and the median of the per-round ratios (the two runs of a round",
        "  are adjacent, so they share the load best).",
        "",
        "| Input | omnispeech | qwen-tts | speed-up (min, per round) | RTF omnispeech "
        "| RTF qwen-tts |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = f"{r['seconds_per_clip']:g} s" + (f" x {r['batch']}" if r["batch"] > 1 else "")
        lines.append(
            f"| {name} ({r['frames']} frames) | {times(r['omnispeech'])} | {times(r['qwen_tts'])}"
            f" | **{sig3(r['speedup'])}x** ({sig3(r['speedup_min'])}x, "
            f"{sig3(r['speedup_paired'])}x) "
            f"| {sig3(r['omnispeech']['rtf'])} | {sig3(r['qwen_tts']['rtf'])} |"
        )
    singles = {r["seconds_per_clip"]: r for r in rows if r["batch"] == 1}
    lines += [
        "",
        f"Streaming encode (ours; the reference has none): after a clip's history, "
        f"{res['settings']['pushes']} pushes of 80 ms",
        "(one code frame each), timed one by one. Without streaming, each new 80 ms means",
        "encoding the whole audio again: the reference's time for the clip above.",
        "",
        "| History | per 80 ms push: median (max) | RTF | re-encoding with qwen-tts | "
        "ratio | streamed codes = offline |",
        "|---|---|---|---|---|---|",
    ]
    for r in res.get("streaming", []):
        total = r["history_seconds"] + r["pushes"] * HOP / SAMPLE_RATE
        ref = singles.get(total)
        ref_s = ref["qwen_tts"]["median_s"] if ref else float("nan")
        lines.append(
            f"| {r['history_seconds']:g} s | {1000 * r['push_seconds_median']:.1f} ms "
            f"({1000 * r['push_seconds_max']:.1f} ms) | {sig3(r['rtf'])} | {sig3(ref_s)} s | "
            f"**{sig3(ref_s / r['push_seconds_median'])}x** | {r['equals_offline']} |"
        )
    lines += [
        "",
        "Agreement of the 16 codes per frame (same weights, same audio; 10 s is 250 transformer",
        f"frames, exactly one window, 60 s is {6 * WINDOW}):",
        "",
    ]
    for r in rows:
        name = f"{r['seconds_per_clip']:g} s" + (f" x {r['batch']}" if r["batch"] > 1 else "")
        text = f"- {name}: {_codes_text(r['codes'])}"
        lat = r.get("latent")
        if lat is not None:
            text += (
                f"; latent before quantization: max |diff| {lat['max_abs_diff']:.1e} "
                f"(max |latent| {sig3(lat['max_abs_latent'])})"
            )
            if lat["max_abs_diff_after_window"] is not None:
                text += (
                    f", {lat['max_abs_diff_after_window']:.1e} over the frames after the first"
                    f" {WINDOW} transformer frames"
                )
        lines.append(text + ".")
    att = res["attention"]
    lines += [
        "",
        f"Attention beyond the configured window ({att['transformer_frames']} transformer frames"
        f" at 25 Hz, window {att['reference_sliding_window']}): max |difference| of the encoder"
        " transformer's output from the reference's default "
        f"(`{att['reference_attention_class']}`; max |output| "
        f"{sig3(att['max_abs_transformer_output'])}), same input frames:",
        "",
        "| Variant | all frames | frames after the first 250 |",
        "|---|---|---|",
    ]
    labels = {
        "reference_eager": "reference, eager attention",
        "omnispeech_all_earlier": "omnispeech, all earlier frames (as loaded)",
        "omnispeech_window_250": "omnispeech, `attention_window=250`",
    }
    for key, label in labels.items():
        if f"max_abs_diff_{key}" in att:
            lines.append(
                f"| {label} | {att[f'max_abs_diff_{key}']:.1e} "
                f"| {att[f'max_abs_diff_{key}_after_window']:.1e} |"
            )
    lines += [
        "",
        f"Codes of omnispeech with `attention_window=250` against the reference: "
        f"{_codes_text(att['windowed_codes'])}.",
        "",
        "With SDPA or eager attention the reference builds its mask with transformers'",
        "`create_causal_mask` (plain causal, no window; with no padding SDPA runs",
        "`is_causal=True` without a mask): every frame attends to all earlier frames. The",
        "`sliding_window` of 250 is only passed to the flash-attention kernel",
        "(`MimiFlashAttention2`, window (249, 249) once keys exceed 250), which is not available",
        "on CPU.",
        "",
    ]
    mem = res.get("memory")
    if mem and "omnispeech" in mem:
        o, q = mem["omnispeech"], mem["qwen_tts"]
        lines += [
            f"Peak resident memory of one {mem['seconds']:g} s encode, each implementation in a",
            "fresh process (`VmHWM`, reset after loading the model and a 1 s warm-up encode): "
            "omnispeech "
            f"{sig3(o['peak_mib'])} MiB ({sig3(o['encode_increase_mib'])} MiB above the loaded "
            f"model), qwen-tts {sig3(q['peak_mib'])} MiB ({sig3(q['encode_increase_mib'])} MiB "
            "above the loaded model, which includes its decoder).",
        ]
    else:
        lines.append("Peak memory is not measured in this run.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    print_processor()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: short audio, few repeats, no RESULTS.md"
    )
    parser.add_argument("--peak-memory", choices=("ours", "ref"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_memory:
        peak_memory_child(args.peak_memory, args.folder, args.seconds)
        return
    load_reference()  # fail early, with one line, outside the side environment
    s = QUICK if args.quick else FULL
    threads = set_threads(THREADS)
    print(f"torch.set_num_threads({THREADS}) -> {threads} threads", file=sys.stderr)
    results: dict[str, Any] = {
        "benchmark": "codec",
        "date": today(),
        "machine": machine_info(),
        "versions": {
            d: importlib.metadata.version(d) for d in ("qwen-tts", "transformers", "omnispeech")
        },
        "settings": {**dataclasses.asdict(s), "quick": args.quick},
    }
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ref, ours = build_models(Path(tmp))
        print(f"models built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        clips = [speech_like(sec, seed=sec) for sec in s.seconds]
        batch = torch.cat([speech_like(s.batch_seconds, seed=100 + i) for i in range(s.batch)])
        results["clips"] = []
        codes: dict[str, torch.Tensor] = {}
        for wav in (batch, *clips):  # the longest clip last: its codes are used below
            print(f"timing {tuple(wav.shape)} ...", file=sys.stderr)
            results["clips"].append(bench_clip(ref, ours, wav, s, codes))
        print("streaming ...", file=sys.stderr)
        results["streaming"] = [bench_streaming(ours, clip, s.pushes) for clip in clips]
        print("attention check ...", file=sys.stderr)
        results["attention"] = attention_check(ref, ours, clips[-1], codes["ref"])
        if s.memory:
            print("peak memory ...", file=sys.stderr)
            results["memory"] = bench_memory(Path(tmp), max(s.seconds))
        results["total_s"] = time.perf_counter() - t0
    print_json(results)
    if not args.quick:
        write_section("codec", markdown(results), processor=processor_line(results["machine"]))


if __name__ == "__main__":
    main()
