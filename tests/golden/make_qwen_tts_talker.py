"""Generate golden files for the Qwen3-TTS talker, code predictor and prompt arrangement.

A TINY seeded ``Qwen3TTSForConditionalGeneration`` (qwen-tts 0.1.1, transformers 4.57.3, float32,
one CPU thread) is saved in the released folder layout, and its outputs are recorded:

* ``talker_logits``: ``talker(inputs_embeds)`` codebook-0 logits of a random input;
* ``predictor_logits``: the code predictor's prefill logits (head 0) of a random input;
* ``case_*``: whole greedy ``generate`` runs (x-vector cloning, in-context cloning in the
  streaming-text and non-streaming arrangements, a built-in dialect speaker), with their token
  ids, reference codes and speaker vector as inputs and the codes ``[T, K]`` as output.

The script is not part of the test suite; only its output folder is read by the tests. Side
environment: the one described in ``make_qwen_tts_tokenizer.py`` (qwen-tts installed without
dependencies) plus librosa, which the reference's modeling module imports. Run from the
repository root::

    /tmp/venv-qwentts/bin/python tests/golden/make_qwen_tts_talker.py

The reference modules are loaded as ``make_qwen_tts_speaker.py`` loads them (the speech tokenizer
import of the modeling module answered by a stand-in, which the talker never uses; the package
``__init__`` files not run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_qwen_tts_speaker import load_reference  # noqa: E402
from make_qwen_tts_tokenizer import _normal, save_npz  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "qwen_tts_talker_tiny"

# Small text ids so that the text embedding stays tiny (the release uses 151644.. 151673).
TEXT_IDS = {
    "im_start_token_id": 1004,
    "im_end_token_id": 1005,
    "tts_pad_token_id": 1001,
    "tts_bos_token_id": 1002,
    "tts_eos_token_id": 1003,
}
ASSISTANT, USER, NEWLINE = 77, 78, 10

TALKER = {
    "vocab_size": 3072,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "hidden_act": "silu",
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1e6,
    "rope_scaling": {"type": "default", "mrope_section": [2, 1, 1], "interleaved": True},
    "text_vocab_size": 1024,
    "text_hidden_size": 24,
    "num_code_groups": 4,
    "codec_pad_id": 2148,
    "codec_bos_id": 2149,
    "codec_eos_token_id": 2150,
    "codec_think_id": 2154,
    "codec_nothink_id": 2155,
    "codec_think_bos_id": 2156,
    "codec_think_eos_id": 2157,
    "codec_language_id": {"english": 2050, "chinese": 2055, "beijing_dialect": 2074},
    "spk_id": {"aiden": 2861, "dylan": 2878},
    "spk_is_dialect": {"aiden": False, "dylan": "beijing_dialect"},
    # A narrower predictor than the talker, so the 1.7B-style projection is exercised.
    "code_predictor_config": {
        "vocab_size": 256,
        "hidden_size": 12,
        "intermediate_size": 24,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 8,
        "hidden_act": "silu",
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1e6,
        "num_code_groups": 4,
    },
}
SPEAKER = {
    "mel_dim": 128,
    "enc_dim": 16,
    "enc_channels": [16, 16, 16, 16, 48],
    "enc_kernel_sizes": [5, 3, 3, 3, 1],
    "enc_dilations": [1, 2, 3, 4, 1],
    "enc_attention_channels": 8,
    "enc_res2net_scale": 4,
    "enc_se_channels": 8,
    "sample_rate": 24000,
}
MAX_NEW = 14


def redraw(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Weights large enough that greedy choices are decided by the model, not by ties."""
    new = {}
    for name, old in model.state_dict().items():
        if "norm" in name and name.endswith("weight"):
            value = 1.0 + _normal(gen, old.shape, 0.1)
        elif name.endswith("num_batches_tracked"):
            value = old
        elif old.dim() >= 2 and "speaker_encoder" not in name:
            value = _normal(gen, old.shape, 1.0 / np.sqrt(old.shape[-1]))
            if "embedding" in name:
                value = _normal(gen, old.shape, 1.0)
        else:
            value = _normal(gen, old.shape, 0.2) if old.is_floating_point() else old
        new[name] = value.to(old.dtype)
    model.load_state_dict(new, strict=True)


def prompt_ids(text: list[int]) -> torch.Tensor:
    """``<|im_start|>assistant\\n{text}<|im_end|>\\n<|im_start|>assistant\\n`` as ids [1, L]."""
    s, e = TEXT_IDS["im_start_token_id"], TEXT_IDS["im_end_token_id"]
    ids = [s, ASSISTANT, NEWLINE, *text, e, NEWLINE, s, ASSISTANT, NEWLINE]
    return torch.tensor([ids])


def ref_ids(text: list[int]) -> torch.Tensor:
    """``<|im_start|>assistant\\n{ref_text}<|im_end|>\\n`` as ids [1, L]."""
    s, e = TEXT_IDS["im_start_token_id"], TEXT_IDS["im_end_token_id"]
    return torch.tensor([[s, ASSISTANT, NEWLINE, *text, e, NEWLINE]])


def instruct_ids(text: list[int]) -> torch.Tensor:
    """``<|im_start|>user\n{instruct}<|im_end|>\n`` as ids [1, L]."""
    s, e = TEXT_IDS["im_start_token_id"], TEXT_IDS["im_end_token_id"]
    return torch.tensor([[s, USER, NEWLINE, *text, e, NEWLINE]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg_mod, mdl = load_reference()
    config = cfg_mod.Qwen3TTSConfig(
        talker_config=TALKER,
        speaker_encoder_config=SPEAKER,
        tokenizer_type="qwen3_tts_tokenizer_12hz",
        tts_model_size="tiny",
        tts_model_type="base",
        **TEXT_IDS,
    )
    model = mdl.Qwen3TTSForConditionalGeneration(config).eval()
    gen = torch.Generator().manual_seed(20260101)
    redraw(model, gen)

    arrays: dict[str, np.ndarray] = {}
    with torch.no_grad():
        x = _normal(gen, (2, 7, TALKER["hidden_size"]), 1.0)
        out = model.talker(inputs_embeds=x, attention_mask=torch.ones(2, 7, dtype=torch.long))
        arrays["talker_inputs"] = x.numpy()
        arrays["talker_logits"] = out.logits.numpy()
        y = _normal(gen, (2, 2, TALKER["hidden_size"]), 1.0)
        arrays["predictor_inputs"] = y.numpy()
        arrays["predictor_logits"] = model.talker.code_predictor(inputs_embeds=y).logits.numpy()

    rng = np.random.default_rng(7)
    target = [int(t) for t in rng.integers(20, 1000, size=7)]
    ref_text = [int(t) for t in rng.integers(20, 1000, size=5)]
    ref_code = torch.from_numpy(rng.integers(0, 256, size=(9, 4))).long()
    ref_code[:, 0] = torch.from_numpy(rng.integers(0, 2048, size=9))
    spk = _normal(gen, (TALKER["hidden_size"],), 1.0)
    arrays.update(target=np.array(target), ref_text=np.array(ref_text))
    arrays.update(ref_code=ref_code.numpy(), speaker=spk.numpy())

    greedy = dict(do_sample=False, subtalker_dosample=False, max_new_tokens=MAX_NEW)
    cases = {
        "xvector_english_stream": dict(icl=False, language="english", non_streaming=False),
        "icl_auto_stream": dict(icl=True, language="auto", non_streaming=False),
        "icl_english_nonstream": dict(icl=True, language="english", non_streaming=True),
        "xvector_auto_nonstream": dict(icl=False, language="auto", non_streaming=True),
    }
    for name, case in cases.items():
        prompt = {
            "ref_code": [ref_code] if case["icl"] else None,
            "ref_spk_embedding": [spk],
            "x_vector_only_mode": [not case["icl"]],
            "icl_mode": [case["icl"]],
        }
        codes, _ = model.generate(
            input_ids=[prompt_ids(target)],
            ref_ids=[ref_ids(ref_text)] if case["icl"] else None,
            voice_clone_prompt=prompt,
            languages=[case["language"]],
            non_streaming_mode=case["non_streaming"],
            **greedy,
        )
        arrays[f"case_{name}"] = codes[0].numpy()
    codes, _ = model.generate(
        input_ids=[prompt_ids(target)],
        languages=["chinese"],
        speakers=["dylan"],
        non_streaming_mode=True,
        **greedy,
    )
    arrays["case_speaker_dylan_chinese_nonstream"] = codes[0].numpy()
    # VoiceDesign style: no speaker slot, an instruction turn before the role header.
    instruct = [int(t) for t in np.random.default_rng(8).integers(20, 1000, size=6)]
    arrays["instruct"] = np.array(instruct)
    for name, non_streaming in (("design_english_nonstream", True), ("design_auto_stream", False)):
        codes, _ = model.generate(
            input_ids=[prompt_ids(target)],
            instruct_ids=[instruct_ids(instruct)],
            languages=["english" if non_streaming else "auto"],
            non_streaming_mode=non_streaming,
            **greedy,
        )
        arrays[f"case_{name}"] = codes[0].numpy()

    out_dir = args.out
    if out_dir.exists():
        shutil.rmtree(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        out_dir.mkdir(parents=True)
        shutil.copy(Path(tmp) / "model.safetensors", out_dir / "model.safetensors")
        saved = json.loads((Path(tmp) / "config.json").read_text())
    keep = ("talker_config", "speaker_encoder_config", "tokenizer_type", "tts_model_size")
    config_out = {k: saved[k] for k in keep}
    config_out.update(model_type="qwen3_tts", tts_model_type="base", **TEXT_IDS)
    (out_dir / "config.json").write_text(json.dumps(config_out, indent=2, sort_keys=True) + "\n")
    save_npz(out_dir / "cases.npz", arrays)
    lines = [f"| `{k}` | {list(v.shape)} | {v.dtype} |" for k, v in arrays.items()]
    (out_dir / "README.md").write_text(
        "# Tiny Qwen3-TTS talker: golden files\n\n"
        "Written by `tests/golden/make_qwen_tts_talker.py` (qwen-tts 0.1.1, transformers "
        "4.57.3, float32, CPU) from seeded random weights; see that script for the cases.\n\n"
        "| array | shape | dtype |\n| --- | --- | --- |\n" + "\n".join(lines) + "\n"
    )
    for k, v in arrays.items():
        if k.startswith("case_"):
            print(k, v.shape, v[:2].tolist())


if __name__ == "__main__":
    main()
