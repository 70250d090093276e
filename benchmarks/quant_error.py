"""Error of weight-only quantization against float32 on the same random weights.

No timing: this script measures what int8 and int4 change in the outputs, at the released
shapes (Qwen3-TTS-12Hz-0.6B talker + code predictor, Qwen3-ASR-0.6B text decoder), with
weights drawn like ``randomize_`` (N(0, 0.02^2), norms at identity). For each format:

- **logits**, teacher-forced on the same inputs: the largest absolute error relative to the
  largest float logit, the RMS error relative to the RMS logit, and how often the arg-max
  agrees. For the talker, codebook 0 over a random prompt; for the code predictor, every
  residual head at every frame of the float model's greedy codes; for the ASR decoder, every
  position of a random token sequence.
- **greedy codes**, free-running: the fraction of frames whose 16 codes all equal float32's,
  and the first frame that differs.

Formats: ``bfloat16`` (activations only, for scale), ``int8`` (per-row scales, bfloat16
activations as ``quantize="int8"`` runs), ``int4-gG`` (groups of G columns, float32
activations as ``quantize="int4"`` runs).

Random weights have no margin between their top candidates, so arg-max and greedy-code
agreement here are a lower bound of what trained weights give; the bundled model's held-out
intelligibility with and without 4 bits is the measure that matters (``omnispeech eval``).

Run from the repository root (about 3 GB of memory at the released shapes)::

    python -m benchmarks.quant_error            # released shapes, writes the quant_error section
    python -m benchmarks.quant_error --tiny     # small shapes, prints only (a smoke run)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import (
    machine_info,
    machine_line,
    print_json,
    print_processor,
    randomize_,
    sig3,
    today,
    write_section,
)
from benchmarks.qwen_tts_talker_ref import TALKER_06B
from omnispeech.core import Decoder, DecoderConfig
from omnispeech.core.quant import Int8Linear, quantize_linears_
from omnispeech.talker import GenerationConfig, Talker
from omnispeech.talker.config import spec_from_qwen3_tts

GROUP_SIZES = (32, 64, 128)


@dataclasses.dataclass(frozen=True)
class Shapes:
    talker: dict[str, Any]  # a Qwen3-TTS talker_config
    asr_decoder: DecoderConfig
    prompt: int  # talker prompt positions
    frames: int  # greedy frames
    asr_tokens: int  # ASR decoder positions


RELEASED = Shapes(
    TALKER_06B,
    DecoderConfig(
        vocab_size=151936,
        hidden_size=1024,
        intermediate_size=3072,
        num_layers=28,
        num_heads=16,
        num_kv_heads=8,
        head_dim=128,
    ),
    prompt=32,
    frames=16,
    asr_tokens=64,
)
_TINY_SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
)
TINY = Shapes(
    {
        **TALKER_06B,
        **_TINY_SHAPE,
        "text_hidden_size": 64,
        "code_predictor_config": {
            **TALKER_06B["code_predictor_config"],
            **_TINY_SHAPE,
            "vocab_size": 256,
        },
    },
    DecoderConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
    ),
    prompt=8,
    frames=4,
    asr_tokens=16,
)


def logit_error(want: torch.Tensor, got: torch.Tensor) -> dict[str, float]:
    """Errors of ``got`` against ``want`` (both ``[..., V]``), as fractions."""
    want, got = want.float(), got.float()
    diff = got - want
    return {
        "max_rel": float(diff.abs().max() / want.abs().max()),
        "rms_rel": float(diff.square().mean().sqrt() / want.square().mean().sqrt()),
        "argmax_agree": float((want.argmax(-1) == got.argmax(-1)).float().mean()),
    }


def talker_formats() -> dict[str, Callable[[Talker], Talker]]:
    """Name -> how to turn a float32 talker into that format (on a copy)."""

    def bf16(t: Talker) -> Talker:
        return t.to(torch.bfloat16)

    def int8(t: Talker) -> Talker:
        t.to(torch.bfloat16).quantize_int8()
        return t

    out = {"bfloat16": bf16, "int8": int8}
    for g in GROUP_SIZES:
        out[f"int4-g{g}"] = lambda t, g=g: (t.quantize_int4(g), t)[1]
    return out


def _greedy(talker: Talker, prompt: torch.Tensor, frames: int) -> torch.Tensor:
    """Greedy codes ``[frames, K]`` after ``prompt`` ``[1, L, H]`` (end of speech forbidden;
    the text track is zero)."""
    gen = GenerationConfig.greedy()
    prompt = prompt.to(talker.model.norm.weight.dtype)
    state = talker.start(prompt, prompt.shape[1] + frames + 1)
    out = []
    for _ in range(frames):
        codes = talker.sample_frame(state, gen, allow_end=False)
        out.append(codes[0])
        talker.advance(state, codes, torch.zeros_like(state.hidden))
    return torch.stack(out)


def _predictor_logits(talker: Talker, prompt: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Teacher-forced residual logits ``[frames, K-1, V]``: each frame's hidden state from
    the prompt and the given earlier frames, each head fed the given codes."""
    dtype = talker.model.norm.weight.dtype
    frames, K = codes.shape
    with torch.inference_mode():
        embeds = talker.embed_frames(codes.t()[None])  # [1, frames, H]
        seq = torch.cat((prompt, embeds.float()), dim=1).to(dtype)
        hidden = talker.model(seq)[0, prompt.shape[1] - 1 : prompt.shape[1] - 1 + frames]
        cp = talker.code_predictor
        inputs = [hidden, talker.embed_codec(codes[:, 0])]
        inputs += [cp.model.codec_embedding[j](codes[:, j + 1]) for j in range(K - 2)]
        x = torch.stack(inputs, dim=1)  # [frames, K, H]
        h = cp.model(cp._project(x))
        return torch.stack([cp.lm_head[j](h[:, j + 1]) for j in range(K - 1)], dim=1).float()


def measure_talker(shapes: Shapes) -> dict[str, Any]:
    spec = spec_from_qwen3_tts({"talker_config": shapes.talker})
    base = Talker(spec).eval()
    randomize_(base, std=0.02, seed=0)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randn(1, shapes.prompt, spec.talker.hidden_size, generator=g) * 0.5
    with torch.inference_mode():
        want = base(prompt).float()
        want_codes = _greedy(base, prompt, shapes.frames)
        want_cp = _predictor_logits(base, prompt, want_codes)
    out: dict[str, Any] = {}
    for name, convert in talker_formats().items():
        model = convert(copy.deepcopy(base))
        with torch.inference_mode():
            got = model(prompt.to(model.model.norm.weight.dtype))
            codes = _greedy(model, prompt, shapes.frames)
            got_cp = _predictor_logits(model, prompt, want_codes)
        same = (codes == want_codes).all(dim=1)
        first = int((~same).nonzero()[0]) if not bool(same.all()) else shapes.frames
        out[name] = {
            "codebook0_logits": logit_error(want, got),
            "residual_logits": logit_error(want_cp, got_cp),
            "greedy_frames_equal": float(same.float().mean()),
            "greedy_codes_equal": float((codes == want_codes).float().mean()),
            "first_different_frame": first,
        }
        del model
    return out


def measure_asr_decoder(shapes: Shapes) -> dict[str, Any]:
    cfg = shapes.asr_decoder
    base = Decoder(cfg).eval()
    randomize_(base, std=0.02, seed=2)
    ids = torch.randint(0, cfg.vocab_size, (1, shapes.asr_tokens), generator=torch.Generator())
    with torch.inference_mode():
        want = base.logits(base(base.embed_tokens(ids)))
        # as ASR.quantize_int8: bfloat16 activations, int8 layers, an int8 copy of the head
        model = copy.deepcopy(base).to(torch.bfloat16)
        quantize_linears_(model.layers, torch.bfloat16)
        head = Int8Linear.from_weight(base.embed_tokens.weight, None, torch.bfloat16)
        got = head(model(model.embed_tokens(ids)))
        b16 = copy.deepcopy(base).to(torch.bfloat16)
        got16 = b16.logits(b16(b16.embed_tokens(ids)))
    return {"bfloat16": logit_error(want, got16), "int8": logit_error(want, got)}


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "## Weight-only quantization: error against float32 (random weights, released shapes)",
        "",
        f"{today()}, `python -m benchmarks.quant_error`; {machine_line(res['machine'])}.",
        "Fractions: max / RMS error relative to the largest / RMS float32 logit; arg-max and",
        "greedy agreement. Random weights have no margin between top candidates, so agreement",
        "is a lower bound of what trained weights give.",
        "",
        "| Qwen3-TTS 0.6B talker | cb0 max | cb0 rms | cb0 top-1 | residual max | residual rms "
        "| residual top-1 | frames equal | first differing frame |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["talker"].items():
        c, p = r["codebook0_logits"], r["residual_logits"]
        lines.append(
            f"| {name} | {sig3(c['max_rel'])} | {sig3(c['rms_rel'])} | {sig3(c['argmax_agree'])} "
            f"| {sig3(p['max_rel'])} | {sig3(p['rms_rel'])} | {sig3(p['argmax_agree'])} "
            f"| {sig3(r['greedy_frames_equal'])} | {r['first_different_frame']} |"
        )
    lines += ["", "| Qwen3-ASR 0.6B text decoder | max | rms | top-1 |", "|---|---|---|---|"]
    for name, e in res["asr_decoder"].items():
        lines.append(
            f"| {name} | {sig3(e['max_rel'])} | {sig3(e['rms_rel'])} | {sig3(e['argmax_agree'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    print_processor()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small shapes; print only")
    args = parser.parse_args(argv)
    shapes = TINY if args.tiny else RELEASED
    res = {
        "machine": machine_info(),
        "shapes": "tiny" if args.tiny else "released",
        "talker": measure_talker(shapes),
        "asr_decoder": measure_asr_decoder(shapes),
    }
    print_json(res)
    if not args.tiny:
        write_section("quant_error", markdown(res))


if __name__ == "__main__":
    main()
