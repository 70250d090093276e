"""Generate golden files for the Qwen3-TTS 12 Hz speech tokenizer (vocoder and codec encoder).

The files are produced by the reference implementation in the ``qwen-tts`` 0.1.1 package
(``qwen_tts/core/tokenizer_12hz``: ``Qwen3TTSTokenizerV2Model`` / ``Qwen3TTSTokenizerV2Config``)
from a TINY randomly drawn model, so that omnispeech's own implementation can be checked against
it without the released checkpoint. The script is not part of the test suite and is not imported
by the tests; only its output folder is used.

Side environment (kept outside the repository; the package's own dependency list pulls a
torchaudio that does not work with this torch, so it is installed without dependencies)::

    python3 -m venv /tmp/venv-qwentts
    /tmp/venv-qwentts/bin/pip install torch==2.13.0        # or a local torch 2.13.0 wheel
    /tmp/venv-qwentts/bin/pip install transformers==4.57.3 numpy safetensors soundfile
    /tmp/venv-qwentts/bin/pip install --no-deps qwen-tts==0.1.1

``import qwen_tts`` would import the 25 Hz tokenizer too (torchaudio, sox, onnxruntime, librosa),
so this script loads only the two 12 Hz module files, under their own package names, without
running the package ``__init__`` files. No stub modules are needed.

Run from the repository root::

    /tmp/venv-qwentts/bin/python tests/golden/make_qwen_tts_tokenizer.py

(``--out DIR`` changes the output folder; default ``tests/data/qwen_tts_tokenizer_tiny``.)

The output is deterministic on one machine: a second run writes byte-identical files (the
``.npz`` archives are written with fixed time stamps, the torch computation runs on one CPU thread).
Another processor draws the same weights (torch's seeded generator) and chooses the same codes,
but computes audio that differs in its last bits: the decoder's by up to 6e-6.

Written files:

* ``config.json`` / ``model.safetensors``: the tiny model in the layout of a released
  Qwen3-TTS-Tokenizer-12Hz folder (``save_pretrained``; keys ``encoder.*`` and ``decoder.*``).
* ``decoder_cases.npz``: codes [B, 16, T] (int64) and the decoder's ``forward(codes)`` output
  [B, 1, 1920 * T] (float32).
* ``encoder_cases.npz``: audio [2, 1, S] (float32, zero padded) with its lengths, and the codes
  returned by ``Qwen3TTSTokenizerV2Model.encode`` for the batch, and for each item encoded alone.
* ``README.md``: a description of the above.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import shutil
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "qwen_tts_tokenizer_tiny"

EXPECTED_VERSIONS = {"qwen-tts": "0.1.1", "transformers": "4.57.3"}

SAMPLE_RATE = 24000
HOP = 1920

ENCODER_CONFIG = {
    "sampling_rate": SAMPLE_RATE,
    "frame_rate": 12.5,
    "audio_channels": 1,
    "hidden_size": 32,
    "num_filters": 6,
    "num_residual_layers": 1,
    "upsampling_ratios": [8, 6, 5, 4],
    "kernel_size": 7,
    "last_kernel_size": 3,
    "residual_kernel_size": 3,
    "dilation_growth_rate": 2,
    "use_causal_conv": True,
    "pad_mode": "constant",
    "compress": 2,
    "trim_right_ratio": 1.0,
    "codebook_size": 64,
    "codebook_dim": 16,
    "num_quantizers": 32,
    "use_conv_shortcut": False,
    "vector_quantization_hidden_dimension": 16,
    "num_semantic_quantizers": 1,
    "upsample_groups": 32,
    "num_hidden_layers": 2,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "head_dim": 8,
    "hidden_act": "gelu",
    "max_position_embeddings": 8000,
    "norm_eps": 1e-5,
    "rope_theta": 10000.0,
    # Small, so that the ~76 encoder transformer steps (25 Hz) of the test audio exercise it.
    "sliding_window": 16,
    "layer_scale_initial_scale": 0.01,
}

DECODER_CONFIG = {
    "codebook_size": 64,
    # Not in the config class's __init__ signature; read by the decoder (quantizer and pre_conv).
    "codebook_dim": 32,
    "hidden_size": 32,
    # Not in the __init__ signature either; read by the attention (heads * head_dim != hidden).
    "head_dim": 16,
    "latent_dim": 48,
    "max_position_embeddings": 8000,
    "rope_theta": 10000,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "attention_bias": False,
    # Small, so that tests over ~30 frames exercise the window.
    "sliding_window": 8,
    "intermediate_size": 64,
    "hidden_act": "silu",
    "layer_scale_initial_scale": 0.01,
    "rms_norm_eps": 1e-5,
    "num_hidden_layers": 2,
    "num_quantizers": 16,
    "upsample_rates": [8, 5, 4, 3],
    "upsampling_ratios": [2, 2],
    "decoder_dim": 64,
    "attention_dropout": 0.0,
}

TOP_CONFIG = {
    "encoder_valid_num_quantizers": 16,
    "input_sample_rate": SAMPLE_RATE,
    "output_sample_rate": SAMPLE_RATE,
    "decode_upsample_rate": HOP,
    "encode_downsample_rate": HOP,
}

# Encoder test audio: item lengths in samples, padded with zeros to the longest. Item 0 is the
# shorter one and not a multiple of the hop (its last frame is partial, and in the batch it is
# followed by padding); item 1 is exactly 38 frames.
AUDIO_LENGTHS = (30 * HOP + 700, 38 * HOP)


# --------------------------------------------------------------------------------------------
# Loading the reference code


def load_reference():
    """Import the 12 Hz configuration and modeling modules of the installed qwen-tts package.

    The parent packages are registered as bare module objects so that their ``__init__`` files
    (which import the 25 Hz tokenizer and its extra dependencies) are not executed.
    """
    for dist, want in EXPECTED_VERSIONS.items():
        have = importlib.metadata.version(dist)
        if have != want:
            raise SystemExit(f"{dist} {want} is required, found {have}")
    spec = importlib.util.find_spec("qwen_tts")
    if spec is None or spec.origin is None:
        raise SystemExit("qwen-tts is not installed in this environment")
    root = os.path.dirname(spec.origin)
    for name, sub in (
        ("qwen_tts", ""),
        ("qwen_tts.core", "core"),
        ("qwen_tts.core.tokenizer_12hz", os.path.join("core", "tokenizer_12hz")),
    ):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [os.path.join(root, sub)]
            sys.modules[name] = module
    cfg = importlib.import_module(
        "qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2"
    )
    mdl = importlib.import_module("qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2")
    return cfg, mdl


# --------------------------------------------------------------------------------------------
# Weight redraw


def _normal(gen: torch.Generator, shape, std: float) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float64).mul(std).float()


def _uniform(gen: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * (high - low) + low).float()


def _fan_in(module: nn.Module) -> float:
    if isinstance(module, nn.ConvTranspose1d):
        # Each output sample sums in_channels * kernel / stride taps.
        (k,), (s,) = module.kernel_size, module.stride
        return module.in_channels / module.groups * k / s
    if isinstance(module, nn.Conv1d):
        return module.in_channels / module.groups * module.kernel_size[0]
    if isinstance(module, nn.Linear):
        return module.in_features
    raise TypeError(f"no fan-in rule for {type(module).__name__}")


# Extra gains for conv/linear weights (first matching name fragment wins): the last conv of each
# vocoder residual unit is damped so that the residual stacks do not blow up the signal, and the
# output conv is scaled so that the waveform is mostly inside the [-1, 1] clamp.
WEIGHT_GAINS = (
    ("decoder.decoder.6.conv.weight", 0.1),
    (".conv2.conv.weight", 0.3),
)


def redraw(model: nn.Module, gen: torch.Generator, codebook_std: dict[str, float]) -> None:
    """Replace every weight of ``model`` by a draw that gives non-trivial activations.

    Tensors are visited in state-dict order, so the result depends only on ``gen``'s seed.
    ``codebook_std`` maps a codebook module name to the std of its ``embed_sum`` /
    ``embedding_sum`` draw (default 1).
    """
    state = model.state_dict()
    new = {}
    for name, old in state.items():
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        shape = old.shape
        if leaf == "initialized":
            value = torch.ones_like(old)
        elif leaf in ("embed_sum", "embedding_sum"):
            value = _normal(gen, shape, codebook_std.get(owner_name, 1.0))
        elif leaf == "cluster_usage":
            # Not 1, so that the division by the usage matters.
            value = _uniform(gen, shape, 0.5, 3.0)
        elif leaf in ("alpha", "beta"):
            # SnakeBeta parameters (stored as logarithms).
            value = _normal(gen, shape, 0.3)
        elif leaf in ("scale", "gamma"):
            # LayerScale and ConvNeXt gamma.
            value = _uniform(gen, shape, 0.1, 1.0)
        elif isinstance(owner, nn.LayerNorm) or "RMSNorm" in type(owner).__name__:
            if leaf == "weight":
                value = 1.0 + _normal(gen, shape, 0.1)
            else:
                value = _normal(gen, shape, 0.05)
        elif leaf == "bias":
            value = _normal(gen, shape, 0.05)
        elif leaf == "weight" and isinstance(owner, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)):
            gain = next((g for pat, g in WEIGHT_GAINS if pat in name), 1.0)
            value = _normal(gen, shape, gain / math.sqrt(_fan_in(owner)))
        else:
            raise KeyError(f"no redraw rule for {name} ({type(owner).__name__})")
        new[name] = value.to(old.dtype)
    model.load_state_dict(new, strict=True)
    for module in model.modules():
        if hasattr(module, "_embed"):
            module._embed = None  # Mimi caches embed_sum / usage on first use


# --------------------------------------------------------------------------------------------
# Inputs


def make_audio() -> tuple[np.ndarray, np.ndarray]:
    """Deterministic test audio [2, 1, S] (float32, zero padded) and its lengths [2]."""
    rng = np.random.default_rng(1234)
    total = max(AUDIO_LENGTHS)
    audio = np.zeros((len(AUDIO_LENGTHS), 1, total), dtype=np.float32)
    for i, n in enumerate(AUDIO_LENGTHS):
        t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
        dur = n / SAMPLE_RATE
        f0, f1 = 110.0 * (i + 1), 3000.0 + 1000.0 * i
        chirp = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * dur)))
        tones = 0.5 * np.sin(2 * np.pi * 440.0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t))
        tones += 0.3 * np.sin(2 * np.pi * (220.0 + 37.0 * i) * t + 0.7)
        noise = 0.05 * rng.standard_normal(n)
        sig = 0.3 * chirp + 0.4 * tones + noise
        # Short on/off envelope so that frames differ in level.
        sig *= 0.6 + 0.4 * np.sign(np.sin(2 * np.pi * 2.0 * t + i))
        audio[i, 0, :n] = (0.5 * sig / np.max(np.abs(sig))).astype(np.float32)
    return audio, np.asarray(AUDIO_LENGTHS, dtype=np.int64)


def pad_codes(codes: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """A list of [T_i, Q] code tensors -> ([B, T_max, Q] int64 padded with -1, lengths [B])."""
    lengths = np.asarray([c.shape[0] for c in codes], dtype=np.int64)
    q = codes[0].shape[1]
    out = np.full((len(codes), int(lengths.max()), q), -1, dtype=np.int64)
    for i, c in enumerate(codes):
        out[i, : c.shape[0]] = c.cpu().numpy()
    return out, lengths


# --------------------------------------------------------------------------------------------
# Output


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed``, but with fixed zip time stamps: the same arrays give
    the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def describe(arrays: dict[str, np.ndarray]) -> str:
    return "\n".join(f"| `{k}` | {list(v.shape)} | {v.dtype} |" for k, v in arrays.items())


README = """# Tiny Qwen3-TTS 12 Hz tokenizer: golden files

Generated by `tests/golden/make_qwen_tts_tokenizer.py` with the reference implementation of the
qwen-tts 0.1.1 package (`Qwen3TTSTokenizerV2Model`, transformers 4.57.3, torch float32 on CPU)
from randomly drawn weights (seeded; see the script). Regenerate with the command in the
script's docstring. On the processor that made them the files come out the same byte for byte;
on another one the weights and codes are identical but the decoder audio moves in its last
bits (by up to 6e-6), which the tests' tolerance allows (`tests/test_vocoder_parity.py`).

## `config.json`, `model.safetensors`

A Qwen3-TTS-Tokenizer-12Hz model folder as written by `save_pretrained` (model_type
`qwen3_tts_tokenizer_12hz`, nested `encoder_config` (a Mimi config) and `decoder_config`;
float32 state dict with the package's key names, `encoder.*` and `decoder.*`).
{n_enc} encoder and {n_dec} decoder values.

Tiny sizes (the release's values in brackets):

* decoder: codebook_size 64 [2048], codebook_dim 32 [512] (codebook vectors 16 [256]),
  hidden_size 32 [512], 4 heads x head_dim 16 [16 x 64] (heads * head_dim != hidden_size, as in
  the release), num_key_value_heads 4, intermediate_size 64 [1024], latent_dim 48 [1024],
  2 layers [8], sliding_window 8 [72], rope_theta 10000, rms_norm_eps 1e-5, 16 quantizers,
  upsampling_ratios [2, 2], upsample_rates [8, 5, 4, 3] (1920 samples per frame),
  decoder_dim 64 [1536] (channels 64 -> 32 -> 16 -> 8 -> 4).
* encoder (Mimi): hidden_size 32 [512], num_filters 6 [64], upsampling_ratios [8, 6, 5, 4],
  2 transformer layers [8], 4 heads x 8 [8 x 64], intermediate 64 [2048], sliding_window 16
  [250], 32 quantizers of 64 entries x 16 dims [2048 x 256], frame_rate 12.5.
* top level: encoder_valid_num_quantizers 16, sample rates 24000, decode_upsample_rate =
  encode_downsample_rate = 1920.

Weights are not the package's initialisation: they are redrawn so that the output is far from
zero (convs/linears N(0, 1/fan_in), LayerScale and ConvNeXt gamma U(0.1, 1), SnakeBeta log
alpha/beta N(0, 0.3), codebook sums N(0, s) with cluster_usage U(0.5, 3), norms 1 + N(0, 0.1),
biases N(0, 0.05)).

## `decoder_cases.npz`

Codes are random in [0, 64) (seeded); `wav_*` is `Qwen3TTSTokenizerV2Decoder.forward(codes)`
(full decode, no chunking, output clamped to [-1, 1]); S = 1920 * T.

| array | shape | dtype |
| --- | --- | --- |
{dec_table}

Statistics of `wav_b2_t37`: std {wav_std:.4f}, fraction at +-1: {wav_clamped:.4f}.

## `encoder_cases.npz`

`audio` is a sum of chirps, tones and seeded noise, zero padded to the longest item;
`audio_lengths` are the valid samples per item ({len0}, not a multiple of 1920, and
{len1} = 38 frames exactly). `codes` is
`Qwen3TTSTokenizerV2Model.encode(audio[:, 0], padding_mask)` on the padded batch: per item
[T_i, 16] with T_i = ceil(length_i / 1920), stacked as [B, T_max, 16] and padded with -1;
`code_lengths` = T_i. `codes_single` / `code_lengths_single` are the same for each item
encoded on its own (batch of one, unpadded audio). Batched and single codes are:

{same_text}.

The package encodes the batch without a padding mask: the strided causal convs complete their
last window with zeros on the right, so the partial last frame of a shorter item sees, in the
batch, the activations that the stack computes from the zero padding, and on its own, zeros at
every layer.

| array | shape | dtype |
| --- | --- | --- |
{enc_table}
"""


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg_mod, mdl_mod = load_reference()

    config = cfg_mod.Qwen3TTSTokenizerV2Config(
        encoder_config=dict(ENCODER_CONFIG), decoder_config=dict(DECODER_CONFIG), **TOP_CONFIG
    )
    model = mdl_mod.Qwen3TTSTokenizerV2Model(config).eval().float()
    gen = torch.Generator().manual_seed(20240601)
    redraw(model, gen, {})

    # Encoder codebooks: scale each one relative to the RMS of its quantizer input on the test
    # audio, so that the first 16 code layers use many entries (too large codebooks would
    # always pick the entry of smallest norm). Redraw the whole model with those scales.
    audio, audio_lengths = make_audio()
    with torch.no_grad():
        enc = model.encoder
        x = torch.from_numpy(audio)
        emb = enc.encoder(x)
        emb = enc.encoder_transformer(emb.transpose(1, 2), return_dict=True)[0].transpose(1, 2)
        emb = enc.downsample(emb)
        quant = enc.quantizer
        stds = {}
        for prefix, rvq in (
            ("semantic_residual_vector_quantizer", quant.semantic_residual_vector_quantizer),
            ("acoustic_residual_vector_quantizer", quant.acoustic_residual_vector_quantizer),
        ):
            rms = rvq.input_proj(emb).pow(2).mean().sqrt().item()
            for j in range(len(rvq.layers)):
                name = f"encoder.quantizer.{prefix}.layers.{j}.codebook"
                stds[name] = 0.5 * rms * 0.9**j
    gen = torch.Generator().manual_seed(20240601)
    redraw(model, gen, stds)

    # ---- decoder cases
    rng = np.random.default_rng(0)
    dec = model.decoder
    nq = DECODER_CONFIG["num_quantizers"]
    cases = {
        "b2_t37": rng.integers(0, DECODER_CONFIG["codebook_size"], size=(2, nq, 37)),
        "b1_t1": rng.integers(0, DECODER_CONFIG["codebook_size"], size=(1, nq, 1)),
    }
    dec_arrays: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for key, codes in cases.items():
            codes = codes.astype(np.int64)
            wav = dec(torch.from_numpy(codes)).numpy().astype(np.float32)
            assert wav.shape == (codes.shape[0], 1, HOP * codes.shape[2]), wav.shape
            dec_arrays[f"codes_{key}"] = codes
            dec_arrays[f"wav_{key}"] = wav
    main_wav = dec_arrays["wav_b2_t37"]
    wav_std = float(main_wav.std())
    wav_clamped = float(np.mean(np.abs(main_wav) >= 1.0))
    if not (wav_std > 0.01 and wav_clamped < 0.2):
        raise SystemExit(f"decoder output out of range: std {wav_std}, clamped {wav_clamped}")

    # ---- encoder cases
    with torch.no_grad():
        x = torch.from_numpy(audio[:, 0])
        mask = (torch.arange(x.shape[1])[None, :] < torch.from_numpy(audio_lengths)[:, None]).long()
        batched = model.encode(x, mask, return_dict=True).audio_codes
        single = [
            model.encode(x[i : i + 1, :n], mask[i : i + 1, :n], return_dict=True).audio_codes[0]
            for i, n in enumerate(audio_lengths.tolist())
        ]
    codes_b, lengths_b = pad_codes(batched)
    codes_s, lengths_s = pad_codes(single)
    expected_frames = -(-audio_lengths // HOP)
    assert (lengths_b == expected_frames).all() and (lengths_s == expected_frames).all()
    enc_arrays = {
        "audio": audio,
        "audio_lengths": audio_lengths,
        "codes": codes_b,
        "code_lengths": lengths_b,
        "codes_single": codes_s,
        "code_lengths_single": lengths_s,
    }
    same = np.array_equal(codes_b, codes_s)
    if same:
        same_text = "identical"
    else:
        diff = np.argwhere(codes_b != codes_s)
        frames = sorted({(int(i), int(t)) for i, t, _ in diff})
        same_text = "NOT identical; they differ in " + ", ".join(
            f"item {i} frame {t} ({int(np.sum((diff[:, 0] == i) & (diff[:, 1] == t)))} of 16 codes)"
            for i, t in frames
        )

    # ---- model folder (only config.json and model.safetensors are kept)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(os.path.join(tmp, name), out / name)

    # Round trip: the saved folder loads with strict key matching and reproduces the outputs.
    loaded = mdl_mod.Qwen3TTSTokenizerV2Model.from_pretrained(out).eval()
    with torch.no_grad():
        again = loaded.decoder(torch.from_numpy(dec_arrays["codes_b2_t37"])).numpy()
    assert np.array_equal(again, main_wav), "reloaded decoder output differs"
    saved_config = json.loads((out / "config.json").read_text())
    for key in ("codebook_dim", "head_dim"):
        assert saved_config["decoder_config"][key] == DECODER_CONFIG[key], key

    save_npz(out / "decoder_cases.npz", dec_arrays)
    save_npz(out / "encoder_cases.npz", enc_arrays)

    sd = model.state_dict()
    n_enc = sum(v.numel() for k, v in sd.items() if k.startswith("encoder."))
    n_dec = sum(v.numel() for k, v in sd.items() if k.startswith("decoder."))
    readme = README.format(
        n_enc=n_enc,
        n_dec=n_dec,
        dec_table=describe(dec_arrays),
        enc_table=describe(enc_arrays),
        wav_std=wav_std,
        wav_clamped=wav_clamped,
        len0=int(audio_lengths[0]),
        len1=int(audio_lengths[1]),
        same_text=same_text,
    )
    (out / "README.md").write_text(readme)

    print(f"wrote {out}")
    print(f"  decoder output std {wav_std:.4f}, clamped fraction {wav_clamped:.4f}")
    per_layer = [len(np.unique(codes_b[:, :, q][codes_b[:, :, q] >= 0])) for q in range(16)]
    print(f"  encoder codes: distinct entries per quantizer {per_layer}")
    print(f"  batched == single-item codes: {same}")


if __name__ == "__main__":
    main()
