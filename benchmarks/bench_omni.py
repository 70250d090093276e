"""Qwen3-Omni's speech side on CPU: omnispeech against transformers, same weights, same run.

The talker (20 layers, 128 experts top-6, shared expert), its code predictor (5 layers) and
Code2Wav are at the released Qwen3-Omni-30B-A3B shapes, with random weights. The Thinker keeps
the released width (2048, 32 heads, 128 experts top-8, the 152k vocabulary) but only
``--thinker-layers`` layers (default 2): the 48-layer Thinker is 30 B parameters, 61 GB in
bfloat16, past this machine's memory. Its depth sets the cost of each Thinker token, which
both sides pay alike (omnispeech runs the Thinker with transformers too), and the talker's
``accept_hidden_layer`` becomes the last layer (a text prompt never reads it). The audio and
vision towers are tiny: the prompt is text. Everything runs in bfloat16 (two float32 copies
of the 3.3 B-parameter talker do not fit beside each other).

Measured, greedy, the same text prompt, ``--tokens`` Thinker tokens and ``--frames`` frames:

- **omnispeech** (``Omni.respond``): the first packet, from the Thinker's first token to the
  first audio sample; the cost per frame once the Thinker has finished (talker step, 15 code
  predictor steps, one streaming Code2Wav push).
- **transformers** (``Qwen3OmniMoeForConditionalGeneration.generate(return_audio=True)``):
  the audio arrives only when generation ends, so its first packet is that moment, counted
  from the Thinker's first token (a generation of one text token); its cost per frame is the
  time with audio less the time of the same text without audio, per frame.

Run ``python -m benchmarks.bench_omni`` (writes the ``omni`` section of ``RESULTS.md``), or
``--quick`` for a smoke run at small shapes (prints only). ``--folder`` keeps the random model
on disk (about 11 GB at the released shapes) for another run.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
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
    today,
    write_section,
)

THREADS = 2
DTYPE = torch.bfloat16
CHAT = {  # the released chat-template ids
    "im_start_token_id": 151644,
    "im_end_token_id": 151645,
    "system_token_id": 8948,
    "user_token_id": 872,
    "assistant_token_id": 77091,
    "tts_pad_token_id": 151671,
    "tts_bos_token_id": 151672,
    "tts_eos_token_id": 151673,
}
NEWLINE = 198
MEDIA = {
    "audio_token_id": 151675,
    "audio_start_token_id": 151669,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "position_id_per_seconds": 13,
}
MROPE = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [24, 20, 20]}


def _moe_text(  # noqa: PLR0913 - one argument per dimension
    vocab: int,
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    experts: int,
    top_k: int,
    expert_size: int,
    section: list[int],
    **extra: int,
) -> dict[str, Any]:
    """A mixture-of-experts text config (the Thinker's or the talker's)."""
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "num_experts": experts,
        "num_experts_per_tok": top_k,
        "moe_intermediate_size": expert_size,
        "norm_topk_prob": True,
        "rope_parameters": {**MROPE, "mrope_section": section, "interleaved": True},
        **extra,
    }


def shapes(quick: bool, thinker_layers: int) -> dict[str, Any]:
    """``Qwen3OmniMoeConfig`` arguments: the released speech side (or a small one)."""
    full = int(not quick)  # index of the released value in the (small, released) pairs
    width, experts = (128, 8) if quick else (2048, 128)
    t_width = 128 if quick else 1024
    section = [8, 4, 4] if quick else MROPE["mrope_section"]
    thinker_text = _moe_text(
        vocab=152064,
        hidden=width,
        layers=thinker_layers,
        heads=(4, 32)[full],
        kv_heads=(2, 4)[full],
        head_dim=(32, 128)[full],
        experts=experts,
        top_k=(2, 8)[full],
        expert_size=(64, 768)[full],
        section=section,
        intermediate_size=(64, 768)[full],
    )
    talker_text = _moe_text(
        vocab=3072,
        hidden=t_width,
        layers=(2, 20)[full],
        heads=(4, 16)[full],
        kv_heads=2,
        head_dim=(32, 128)[full],
        experts=experts,
        top_k=(2, 6)[full],
        expert_size=(32, 384)[full],
        section=section,
        intermediate_size=(128, 2048)[full],
        shared_expert_intermediate_size=(64, 768)[full],
    )
    predictor = {
        "vocab_size": 2048,
        "hidden_size": t_width,
        "intermediate_size": 3072 if not quick else 128,
        "num_hidden_layers": 5 if not quick else 1,
        "num_attention_heads": 16 if not quick else 4,
        "num_key_value_heads": 8 if not quick else 2,
        "head_dim": 128 if not quick else 32,
        "num_code_groups": 16,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
    }
    code2wav = {
        "codebook_size": 2048,
        "hidden_size": 1024 if not quick else 64,
        "num_attention_heads": 16 if not quick else 4,
        "num_key_value_heads": 16 if not quick else 4,
        "sliding_window": 72,
        "intermediate_size": 3072 if not quick else 128,
        "num_hidden_layers": 8 if not quick else 1,
        "num_quantizers": 16,
        "decoder_dim": 1536 if not quick else 64,
        "upsample_rates": [8, 5, 4, 3],
        "upsampling_ratios": [2, 2],
    }
    tiny_audio = {
        "num_mel_bins": 128,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "d_model": 32,
        "output_dim": width,
        "downsample_hidden_size": 16,
        "n_window": 50,
        "n_window_infer": 800,
    }
    tiny_vision = {
        "depth": 1,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_heads": 2,
        "out_hidden_size": width,
        "num_position_embeddings": 16,
        "deepstack_visual_indexes": [0],
    }
    return {
        "thinker_config": {
            "audio_end_token_id": 151670,
            "audio_config": tiny_audio,
            "vision_config": tiny_vision,
            "text_config": thinker_text,
            **MEDIA,
        },
        "talker_config": {
            "text_config": talker_text,
            "code_predictor_config": predictor,
            "num_code_groups": 16,
            "thinker_hidden_size": width,
            "accept_hidden_layer": thinker_layers,
            "codec_pad_id": 2148,
            "codec_bos_id": 2149,
            "codec_eos_token_id": 2150,
            "codec_nothink_id": 2155,
            "codec_think_bos_id": 2156,
            "codec_think_eos_id": 2157,
            "speaker_id": {"chelsie": 2301, "ethan": 2302, "aiden": 2303},
            "spatial_merge_size": 2,
            **MEDIA,
        },
        "code2wav_config": code2wav,
        "enable_audio_output": True,
        **CHAT,
    }


def build(folder: Path, quick: bool, thinker_layers: int, seed: int = 0) -> None:
    """Save a random Qwen3-Omni with the talker's end of speech and the Thinker's end of turn
    never chosen (their output rows zeroed), so both sides make every token and frame."""
    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    torch.manual_seed(seed)
    cfg = Qwen3OmniMoeConfig(**shapes(quick, thinker_layers))
    print(
        f"  building the random model ({'small' if quick else 'released'} shapes)...",
        file=sys.stderr,
    )
    model = Qwen3OmniMoeForConditionalGeneration._from_config(cfg, dtype=DTYPE).eval()
    with torch.no_grad():
        model.talker.codec_head.weight[cfg.talker_config.codec_eos_token_id].zero_()
        model.thinker.lm_head.weight[CHAT["im_end_token_id"]].zero_()
    model.save_pretrained(folder)
    del model
    gc.collect()


def prompt_ids(words: int = 12) -> list[int]:
    """A user turn of ``words`` ordinary tokens, then the assistant's head."""
    user = [CHAT["im_start_token_id"], CHAT["user_token_id"], NEWLINE]
    assistant = [CHAT["im_start_token_id"], CHAT["assistant_token_id"], NEWLINE]
    text = [1000 + 37 * i for i in range(words)]
    return [*user, *text, CHAT["im_end_token_id"], NEWLINE, *assistant]


def reference(folder: Path, ids: list[int], tokens: int, frames: int) -> dict[str, float]:
    """Seconds of transformers' generate: one text token, ``tokens`` text tokens, and the same
    with ``frames`` frames of audio."""
    from transformers import Qwen3OmniMoeForConditionalGeneration

    model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(folder, dtype=DTYPE).eval()
    model.talker.code_predictor.generation_config.do_sample = False
    x = torch.tensor([ids])
    common = {"attention_mask": torch.ones_like(x), "thinker_do_sample": False}

    def run(n: int, audio: bool) -> float:
        extra = {"speaker": "ethan", "talker_max_new_tokens": frames, "talker_do_sample": False}
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(
                x,
                thinker_max_new_tokens=n,
                return_audio=audio,
                **common,
                **(extra if audio else {}),
            )
        return time.perf_counter() - start

    run(1, False)  # warm-up
    return {
        "first_token_s": run(1, False),
        "text_s": run(tokens, False),
        "audio_s": run(tokens, True),
    }


def ours(folder: Path, ids: list[int], tokens: int, frames: int) -> dict[str, float]:
    """Event times of ``Omni.respond``: first packet and the cost per frame after the text."""
    from omnispeech.bridge import Omni, SpeechChunk, TextToken
    from omnispeech.talker import GenerationConfig

    model = Omni.from_pretrained(folder, dtype=DTYPE)
    model.voice.generation = GenerationConfig.qwen3_omni({"talker_do_sample": False})

    def run() -> tuple[list[float], list[bool]]:
        times, audio = [], []
        prefill = model.prefill(ids)
        for event in model.respond(prefill, "ethan", tokens, frames, seed=0):
            times.append(time.perf_counter())
            audio.append(isinstance(event, SpeechChunk))
            assert isinstance(event, SpeechChunk | TextToken)
        return times, audio

    run()  # warm-up (kernels compiled, caches allocated)
    times, audio = run()
    first_text = times[audio.index(False)]
    first_audio = times[audio.index(True)]
    # The frames after the last text token are all made in the call that takes that token
    # (the reply's text is complete), then handed out together: their cost is the time from
    # that token's event to the first of them, per frame.
    last_text = max(i for i, a in enumerate(audio) if not a)
    after = sum(audio[last_text + 1 :])
    return {
        "first_packet_s": first_audio - first_text,
        "frame_s": (times[last_text + 1] - times[last_text]) / after,
        "frames_after_text": after,
        "chunks": sum(audio),
    }


def markdown(res: dict[str, Any]) -> str:
    r, o = res["reference"], res["ours"]
    ref_frame = (r["audio_s"] - r["text_s"]) / res["frames"]
    ref_first = r["audio_s"] - r["first_token_s"]
    return "\n".join(
        [
            f"## Qwen3-Omni speech side: omnispeech vs transformers ({res['date']})",
            "",
            f"{machine_line(res['machine'])}; {THREADS} threads, bfloat16. Script: "
            "`benchmarks/bench_omni.py`. Talker (3.3 B parameters, 128 experts top-6), code "
            "predictor and Code2Wav at the released Qwen3-Omni-30B-A3B shapes, random "
            f"weights; the Thinker at the released width with {res['thinker_layers']} of its "
            f"48 layers (memory). Text prompt, greedy, {res['tokens']} Thinker tokens and "
            f"{res['frames']} frames (80 ms each).",
            "",
            "| | first packet (from the Thinker's first token) | per frame (talker + MTP + "
            "vocoder) |",
            "|---|---|---|",
            f"| omnispeech (`Omni.respond`, streamed) | {sig3(o['first_packet_s'])} s "
            f"| {sig3(o['frame_s'] * 1e3)} ms |",
            f"| transformers (`generate(return_audio=True)`, audio at the end) "
            f"| {sig3(ref_first)} s | {sig3(ref_frame * 1e3)} ms |",
            "",
            f"First packet {ref_first / o['first_packet_s']:.1f}x sooner; per frame "
            f"{ref_frame / o['frame_s']:.2f}x.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    print_processor()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes; prints only")
    parser.add_argument("--thinker-layers", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=6, help="Thinker tokens of the reply")
    parser.add_argument("--frames", type=int, default=16, help="talker frames of the reply")
    parser.add_argument("--folder", type=Path, help="keep (or reuse) the random model here")
    args = parser.parse_args(argv)
    set_threads(THREADS)
    res: dict[str, Any] = {
        "benchmark": "omni",
        "date": today(),
        "machine": machine_info(),
        "thinker_layers": args.thinker_layers,
        "tokens": args.tokens,
        "frames": args.frames,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp) / "omni"
        if not (folder / "config.json").is_file():
            build(folder, args.quick, args.thinker_layers)
        ids = prompt_ids()
        print("  transformers ...", file=sys.stderr)
        res["reference"] = reference(folder, ids, args.tokens, args.frames)
        gc.collect()  # its model is gone before ours loads
        print("  omnispeech ...", file=sys.stderr)
        res["ours"] = ours(folder, ids, args.tokens, args.frames)
    print_json(res)
    print(markdown(res))
    if not args.quick:
        write_section("omni", markdown(res), processor=processor_line(res["machine"]))


if __name__ == "__main__":
    main()
