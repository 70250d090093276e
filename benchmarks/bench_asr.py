"""Qwen3-ASR-0.6B shapes on CPU: omnispeech against transformers, same weights, same run.

Measures, float32, with random weights shared by both implementations:

1. the audio encoder (tower + projector) on 30 s of audio: real-time factor;
2. end-to-end recognition of 10 s: encoder, prompt prefill and exactly 40 greedy tokens;
   then once more with omnispeech's text decoder in int8 (``ASR.quantize_int8``);
3. streaming: the cost of one new second of audio after 10 s and after 300 s of history,
   omnispeech's incremental encoder against re-encoding everything so far (what the
   ``qwen-asr`` package does on each new chunk, here with transformers' encoder).

Run ``python -m benchmarks.bench_asr`` (writes the ``asr`` section of ``RESULTS.md``) or
``python -m benchmarks.bench_asr --quick`` for a smoke run (shorter audio, fewer repeats; prints
only, so that real numbers are never replaced by smoke-run ones).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    Timing,
    machine_info,
    machine_line,
    print_json,
    print_processor,
    processor_line,
    randomize_,
    set_threads,
    sig3,
    time_pair,
    today,
    write_section,
)
from omnispeech.testing import tiny_tokenizer

THREADS = 2
SAMPLE_RATE = 16_000
FRAMES_PER_SECOND = 100  # log-mel hop of 10 ms
LANGUAGE = "English"  # forced, so both prompts are the same fixed token sequence

# Qwen3-ASR-0.6B as released (only the weights are random).
AUDIO_CONFIG: dict[str, Any] = {
    "num_mel_bins": 128,
    "d_model": 896,
    "encoder_layers": 18,
    "encoder_attention_heads": 14,
    "encoder_ffn_dim": 3584,
    "output_dim": 1024,
    "downsample_hidden_size": 480,
    "n_window": 50,
    "n_window_infer": 800,
}
TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 65536,
    "tie_word_embeddings": True,
    "rope_theta": 1_000_000.0,
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes and repeat counts of one run."""

    encoder_seconds: int  # item 1
    e2e_seconds: int  # item 2
    new_tokens: int  # item 2: generated tokens, exactly
    histories: tuple[int, ...]  # item 3: seconds already streamed
    cycle: int  # item 3: seconds pushed per timing (8 = one attention window)
    warmup: int
    repeats: int
    long_repeats: int  # fewer for the slowest item (re-encoding 300 s), one run ~ a minute


FULL = Settings(
    encoder_seconds=30,
    e2e_seconds=10,
    new_tokens=40,
    histories=(10, 300),
    cycle=8,
    warmup=1,
    repeats=5,
    long_repeats=3,
)
QUICK = Settings(
    encoder_seconds=5,
    e2e_seconds=3,
    new_tokens=8,
    histories=(10, 24),
    cycle=8,
    warmup=1,
    repeats=2,
    long_repeats=1,
)


# -- models and inputs -------------------------------------------------------------------------
def build_models(folder: Path) -> tuple[Any, Any, Any]:
    """The transformers reference with random weights, saved to ``folder`` and loaded back by
    omnispeech (both ``ASR`` and the standalone ``AudioEncoder``): identical weights."""
    from transformers import Qwen3ASRConfig, Qwen3ASRForConditionalGeneration

    from omnispeech.encoder import AudioEncoder
    from omnispeech.pipelines import ASR

    tok = tiny_tokenizer()
    # The tiny tokenizer gives the specials small ids; the config must use the same ones.
    eos = [tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_end|>")]
    cfg = Qwen3ASRConfig(
        audio_config=dict(AUDIO_CONFIG),
        text_config=dict(TEXT_CONFIG),
        audio_token_id=tok.token_to_id("<|audio_pad|>"),
        eos_token_id=eos,
        pad_token_id=eos[1],
    )
    # sdpa is transformers' default (and fastest CPU) attention; eager is slower still.
    ref = Qwen3ASRForConditionalGeneration._from_config(
        cfg, attn_implementation="sdpa", dtype=torch.float32
    ).eval()
    randomize_(ref, std=0.02, seed=0)
    ref.tie_weights()
    ref.save_pretrained(folder)
    tok.save(str(folder / "tokenizer.json"))
    asr = ASR.from_pretrained(folder)
    encoder = AudioEncoder.from_pretrained(folder)
    return ref, asr, encoder


def noise_features(seconds: int, seed: int = 0) -> torch.Tensor:
    """Log-mel ``[1, 128, 100 * seconds]`` of white noise (the cost does not depend on the
    values, but real features keep the activations in a realistic range)."""
    from omnispeech.audio import log_mel_spectrogram

    rng = np.random.default_rng(seed)
    wav = (0.1 * rng.standard_normal(seconds * SAMPLE_RATE)).astype(np.float32)
    feats = log_mel_spectrogram(torch.from_numpy(wav))[None]
    return feats[..., : seconds * FRAMES_PER_SECOND].contiguous()


def reference_inputs(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' encoder wants frames padded to whole 1-s chunks plus a frame mask."""
    T = feats.shape[-1]
    padded_len = -(-T // FRAMES_PER_SECOND) * FRAMES_PER_SECOND
    padded = torch.nn.functional.pad(feats, (0, padded_len - T))
    mask = (torch.arange(padded_len) < T).long()[None]
    return padded, mask


# -- 1. encoder --------------------------------------------------------------------------------
def bench_encoder(ref: Any, encoder: Any, s: Settings) -> dict[str, Any]:
    """Offline encoder (tower + projector) on ``s.encoder_seconds`` of audio."""
    feats = noise_features(s.encoder_seconds, seed=1)
    padded, mask = reference_inputs(feats)
    lengths = torch.tensor([feats.shape[-1]])
    out: dict[str, torch.Tensor] = {}

    def ours() -> None:
        out["ours"] = encoder(feats, lengths).tokens[0]

    def theirs() -> None:
        out["ref"] = ref.model.get_audio_features(padded, mask).pooler_output

    t_ours, t_ref = time_pair(ours, theirs, s.repeats, s.warmup)
    return {
        "audio_s": s.encoder_seconds,
        "tokens": int(out["ours"].shape[0]),
        "omnispeech": _with_rtf(t_ours, s.encoder_seconds),
        "transformers": _with_rtf(t_ref, s.encoder_seconds),
        **_speedups(t_ours, t_ref),
        # Not a test, a sanity figure: both ran the same weights on the same input.
        "max_abs_diff": float((out["ours"] - out["ref"]).abs().max()),
    }


# -- 2. end to end -----------------------------------------------------------------------------
def bench_e2e(ref: Any, asr: Any, s: Settings) -> dict[str, Any]:
    """Encoder + prompt prefill + exactly ``s.new_tokens`` greedy tokens on one utterance."""
    feats = noise_features(s.e2e_seconds, seed=2)
    padded, mask = reference_inputs(feats)
    n_audio = asr.encoder.cfg.num_tokens(feats.shape[-1])
    prompt = torch.tensor([asr.prompt_ids(n_audio, LANGUAGE)])
    n = s.new_tokens
    out: dict[str, list[int]] = {}

    def ours() -> None:
        tokens = asr.encoder(feats).tokens[0]
        out["ours"] = asr.generate(tokens, LANGUAGE, max_new_tokens=n, min_new_tokens=n)

    def theirs() -> None:
        ids = ref.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            input_features=padded,
            input_features_mask=mask,
            do_sample=False,
            min_new_tokens=n,
            max_new_tokens=n,
        )
        out["ref"] = ids[0, prompt.shape[1] :].tolist()

    t_ours, t_ref = time_pair(ours, theirs, s.repeats, s.warmup)
    return {
        "audio_s": s.e2e_seconds,
        "prompt_tokens": int(prompt.shape[1]),
        "new_tokens": n,
        "generated": {"omnispeech": len(out["ours"]), "transformers": len(out["ref"])},
        "omnispeech": _with_rtf(t_ours, s.e2e_seconds),
        "transformers": _with_rtf(t_ref, s.e2e_seconds),
        **_speedups(t_ours, t_ref),
        "ids_match": out["ours"] == out["ref"],
        "ids": out["ours"],
    }


def bench_e2e_int8(ref: Any, asr: Any, s: Settings) -> dict[str, Any]:
    """:func:`bench_e2e` again with omnispeech's text decoder stored as int8 (weight-only;
    it then computes in bfloat16), against the same float32 reference; with how many leading
    ids agree with the float32 run (random weights make near-ties, where rounding may pick
    the other token)."""
    asr.quantize_int8()
    return bench_e2e(ref, asr, s)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# -- 3. streaming ------------------------------------------------------------------------------
def bench_streaming(ref: Any, encoder: Any, s: Settings) -> dict[str, Any]:
    """Cost of one new second of audio after ``h`` seconds of history, for each ``h``."""
    feats = noise_features(max(s.histories) + s.cycle, seed=3)
    rows = [_streaming_row(ref, encoder, feats, h, s) for h in s.histories]
    first, last = rows[0], rows[-1]
    return {
        "cycle_s": s.cycle,
        "rows": rows,
        "growth_omnispeech": last["omnispeech_per_new_second_s"]
        / first["omnispeech_per_new_second_s"],
        "growth_transformers": last["transformers_per_new_second_s"]
        / first["transformers_per_new_second_s"],
    }


def _streaming_row(
    ref: Any, encoder: Any, feats: torch.Tensor, history: int, s: Settings
) -> dict[str, Any]:
    """One history length: our incremental pushes against transformers re-encoding."""
    fps = FRAMES_PER_SECOND
    push_times: list[float] = []
    emitted: list[int] = []

    def push_cycle() -> None:
        n = 0
        for i in range(history, history + s.cycle):
            start = time.perf_counter()
            n += encoder.push_features(feats[..., i * fps : (i + 1) * fps]).shape[1]
            push_times.append(time.perf_counter() - start)
        emitted.append(n)

    # Reference: re-encode all (history + 1) s to obtain the tokens of the newest second.
    padded, mask = reference_inputs(feats[..., : (history + 1) * fps])
    repeats = s.long_repeats if history > 60 else s.repeats
    with encoder.streaming(1):
        # Pre-fill untimed, one second per push like a live stream.
        for i in range(history):
            encoder.push_features(feats[..., i * fps : (i + 1) * fps])
        # Every timed run restarts from this snapshot, so each measures the same seconds.
        snapshot = encoder.get_streaming_state()
        cycle, t_ref = time_pair(
            push_cycle,
            lambda: ref.model.get_audio_features(padded, mask),
            repeats,
            s.warmup,
            setup_a=lambda: encoder.set_streaming_state(snapshot),
        )
    # The push that completes a window carries almost all of the cost: its latency is what a
    # live caption waits for, so it is reported alongside the average.
    timed_pushes = np.array(push_times[s.warmup * s.cycle :]).reshape(repeats, s.cycle)
    per_second = cycle.median / s.cycle
    return {
        "history_s": history,
        "omnispeech_per_new_second_s": per_second,
        "omnispeech_cycle": cycle.to_dict(),
        "omnispeech_worst_push_s": float(np.median(timed_pushes.max(axis=1))),
        "tokens_per_cycle": emitted[-1],
        "transformers_reencode_s": t_ref.to_dict(),
        "transformers_per_new_second_s": t_ref.median,
        "speedup": t_ref.median / per_second,
        "speedup_min": t_ref.min / (cycle.min / s.cycle),
    }


def _with_rtf(t: Timing, audio_seconds: float) -> dict[str, Any]:
    return {**t.to_dict(), "rtf": t.median / audio_seconds}


def _speedups(ours: Timing, ref: Timing) -> dict[str, float]:
    """transformers time / omnispeech time, from the medians and from the minima (the minimum
    is the run least disturbed by other load on a shared machine)."""
    return {"speedup": ref.median / ours.median, "speedup_min": ref.min / ours.min}


# -- report ------------------------------------------------------------------------------------
def markdown(res: dict[str, Any], command: str) -> str:
    """The ``asr`` section of RESULTS.md."""
    enc, e2e, st = res["encoder"], res["e2e"], res["streaming"]

    def times(d: dict[str, Any]) -> str:
        return f"{sig3(d['median_s'])} s (min {sig3(d['min_s'])})"

    def speedup(d: dict[str, Any]) -> str:
        return f"**{sig3(d['speedup'])}x** (min {sig3(d['speedup_min'])}x)"

    lines = [
        "## ASR: Qwen3-ASR-0.6B shapes, CPU float32 — omnispeech vs transformers",
        "",
        f"- Machine: {machine_line(res['machine'])}",
        f"- Date: {res['date']}",
        f"- Command: `{command}`",
        "- Weights: random N(0, 0.02²) (norms at identity), identical in both: the transformers",
        "  model is built, saved with `save_pretrained`, and loaded by omnispeech.",
        "- Reference: `transformers.Qwen3ASRForConditionalGeneration` with",
        '  `attn_implementation="sdpa"` (its fast default); inputs padded to whole 100-frame',
        "  chunks with `input_features_mask`, as its processor does.",
        f"- Timing: {res['settings']['warmup']} burn-in run(s), then the median (and min) of "
        f"{res['settings']['repeats']} timed runs under `torch.inference_mode`",
        f"  ({res['settings']['long_repeats']} at the longest streaming history). The two",
        "  implementations run interleaved (alternating which goes first), so background load",
        "  on this shared machine hits both alike: absolute times are noisy, ratios much less.",
        "  RTF = compute seconds / audio seconds (lower is better); speed-up = transformers",
        "  median / omnispeech median (in brackets: the ratio of the minima).",
        "",
        "| Measurement | omnispeech | transformers | speed-up |",
        "|---|---|---|---|",
        f"| Encoder + projector, {enc['audio_s']} s audio ({enc['tokens']} tokens): time "
        f"| {times(enc['omnispeech'])} | {times(enc['transformers'])} "
        f"| {speedup(enc)} |",
        f"| Encoder RTF | {sig3(enc['omnispeech']['rtf'])} | {sig3(enc['transformers']['rtf'])} "
        "| |",
        f"| End to end, {e2e['audio_s']} s audio + {e2e['new_tokens']} greedy tokens: time "
        f"| {times(e2e['omnispeech'])} | {times(e2e['transformers'])} "
        f"| {speedup(e2e)} |",
        f"| End-to-end RTF | {sig3(e2e['omnispeech']['rtf'])} "
        f"| {sig3(e2e['transformers']['rtf'])} | |",
    ]
    q = res.get("e2e_int8")
    if q is not None:
        lines += [
            f"| End to end, int8 text decoder (bfloat16 activations): time "
            f"| {times(q['omnispeech'])} | {times(q['transformers'])} (float32) "
            f"| {speedup(q)} |",
            f"| int8: ids equal to transformers float32 / leading ids equal to omnispeech "
            f"float32 | {q['ids_match']} / {_common_prefix(q['ids'], e2e['ids'])} of "
            f"{q['new_tokens']} | | |",
        ]
    for row in st["rows"]:
        lines.append(
            f"| Streaming: compute per new second after {row['history_s']} s of history "
            f"| {sig3(row['omnispeech_per_new_second_s'])} s "
            f"(worst push {sig3(row['omnispeech_worst_push_s'])} s) "
            f"| {times(row['transformers_reencode_s'])} | {speedup(row)} |"
        )
    h0, h1 = st["rows"][0]["history_s"], st["rows"][-1]["history_s"]
    lines += [
        f"| Streaming growth, {h1} s vs {h0} s of history "
        f"| {sig3(st['growth_omnispeech'])}x | {sig3(st['growth_transformers'])}x | |",
        "",
        "What is measured:",
        "",
        f"1. Encoder: log-mel of {enc['audio_s']} s of white noise `[1, 128, "
        f"{enc['audio_s'] * FRAMES_PER_SECOND}]` → audio tokens in the LLM width; ours "
        "`AudioEncoder(features, lengths)`, reference `model.model.get_audio_features(...)`"
        " (audio tower + multi-modal projector). Largest |difference| of the outputs: "
        f"{enc['max_abs_diff']:.1e}.",
        f"2. End to end: encoder + prefill of the {e2e['prompt_tokens']}-token prompt + exactly "
        f"{e2e['new_tokens']} greedy tokens (end tokens suppressed until then); ours "
        f"`ASR.encoder` + `ASR.generate(min_new_tokens=max_new_tokens={e2e['new_tokens']})`, "
        f"reference `generate(do_sample=False, min_new_tokens={e2e['new_tokens']}, "
        f"max_new_tokens={e2e['new_tokens']})`. Same generated ids: "
        f"{e2e['ids_match']}. Feature extraction is excluded from both.",
        f"3. Streaming: ours pushes 1-s pieces (100 frames) into `AudioEncoder.streaming(1)`; "
        f"the history is pre-filled untimed, then {st['cycle_s']} consecutive pushes (one "
        f"{st['cycle_s']}-s attention-window cycle, {st['rows'][0]['tokens_per_cycle']} tokens "
        f"emitted) are timed and divided by {st['cycle_s']}. The push that completes a window "
        "does nearly all of the work; its latency is the *worst push*. The reference streams "
        "the way the `qwen-asr` package does, re-encoding all audio so far on every new chunk, "
        "so its cost per new second is transformers' encoder on (history + 1) s.",
        "",
        "Peak memory is not measured.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    print_processor()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: short audio, few repeats, no RESULTS.md"
    )
    args = parser.parse_args(argv)
    s = QUICK if args.quick else FULL
    threads = set_threads(THREADS)
    print(f"torch.set_num_threads({THREADS}) -> {threads} threads", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ref, asr, encoder = build_models(Path(tmp))
        print(f"models built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    results: dict[str, Any] = {
        "benchmark": "asr",
        "date": today(),
        "machine": machine_info(),
        "settings": {**dataclasses.asdict(s), "quick": args.quick},
        "dtype": "float32",
        "device": "cpu",
        "reference_attn_implementation": "sdpa",
    }
    for name, bench, model in (
        ("encoder", bench_encoder, encoder),
        ("e2e", bench_e2e, asr),
        ("streaming", bench_streaming, encoder),
        ("e2e_int8", bench_e2e_int8, asr),  # last: it quantizes the model in place
    ):
        t0 = time.perf_counter()
        results[name] = bench(ref, model, s)
        print(f"{name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print_json(results)
    if not args.quick:
        write_section(
            "asr",
            markdown(results, "python -m benchmarks.bench_asr"),
            processor=processor_line(results["machine"]),
        )


if __name__ == "__main__":
    main()
