"""Generate golden files for the Qwen3-TTS speaker encoder (ECAPA-TDNN x-vector of Base models).

The files are produced by the reference implementation in the ``qwen-tts`` 0.1.1 package
(``qwen_tts/core/models/modeling_qwen3_tts.py``: ``Qwen3TTSSpeakerEncoder``, ``mel_spectrogram``
and ``Qwen3TTSForConditionalGeneration.extract_speaker_embedding``) from a TINY randomly drawn
encoder, so that omnispeech's own implementation can be checked against it without the released
checkpoint. The script is not part of the test suite and is not imported by the tests; only its
output folder is used.

Side environment: the one of ``make_qwen_tts_tokenizer.py`` plus librosa, which the reference
uses for its mel filter bank (``librosa.filters.mel``) and for resampling reference audio to
24 kHz (``librosa.resample``, soxr "HQ")::

    python3 -m venv /tmp/venv-qwentts
    /tmp/venv-qwentts/bin/pip install torch==2.13.0        # or a local torch 2.13.0 wheel
    /tmp/venv-qwentts/bin/pip install transformers==4.57.3 numpy safetensors soundfile
    /tmp/venv-qwentts/bin/pip install --no-deps qwen-tts==0.1.1
    /tmp/venv-qwentts/bin/pip install librosa==0.11.0

Loading: ``modeling_qwen3_tts.py`` imports ``qwen_tts.inference.qwen3_tts_tokenizer`` only to
attach a speech tokenizer to the full TTS model, and that module imports the 25 Hz tokenizer
(torchaudio, sox, onnxruntime). The parent packages are registered as bare module objects (so
their ``__init__`` files do not run) and that one import is answered by a stand-in module whose
``Qwen3TTSTokenizer`` is an empty placeholder class; nothing used here touches it.

Run from the repository root::

    /tmp/venv-qwentts/bin/python tests/golden/make_qwen_tts_speaker.py

(``--out DIR`` changes the output folder; default ``tests/data/qwen_tts_speaker_tiny``.)

The output is deterministic on one machine: a second run writes byte-identical files (the
``.npz`` archive is written with fixed time stamps, the torch computation runs on one CPU thread).
Another processor draws the same weights (torch's seeded generator) but computes outputs that
differ in their last bits: the embeddings by up to 7e-7.

Written files:

* ``config.json`` / ``model.safetensors``: the tiny encoder in the layout of a released
  Qwen3-TTS Base folder (``speaker_encoder_config``; keys ``speaker_encoder.*``).
* ``cases.npz``: waveforms, the reference's mel features and its speaker embeddings.
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
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "qwen_tts_speaker_tiny"

EXPECTED_VERSIONS = {"qwen-tts": "0.1.1", "transformers": "4.57.3", "librosa": "0.11.0"}

SAMPLE_RATE = 24000

# The released 0.6B / 1.7B Base configs set only enc_dim (1024 / 2048) and sample_rate; the
# other fields are the class defaults. Here every field is written, with tiny sizes (released
# values in brackets in the README). mel_dim stays 128: extract_speaker_embedding hard-codes it.
SPEAKER_CONFIG = {
    "mel_dim": 128,
    "enc_dim": 24,
    "enc_channels": [32, 32, 32, 32, 96],
    "enc_kernel_sizes": [5, 3, 3, 3, 1],
    "enc_dilations": [1, 2, 3, 4, 1],
    "enc_attention_channels": 16,
    "enc_res2net_scale": 4,
    "enc_se_channels": 16,
    "sample_rate": SAMPLE_RATE,
}

# Test clips: (name, seconds, sample rate). The 16 kHz clip goes through the reference's
# resampling step (librosa.resample to 24 kHz) before the encoder, as create_voice_clone_prompt
# does for reference audio at other rates.
CLIPS = (("a", 1.3, 24000), ("b", 2.0, 24000), ("c16k", 1.5, 16000))

# Extra gain on the last conv before the softmax of the attentive pooling: its input is a tanh
# (bounded), so with N(0, 1/fan_in) weights the logits barely vary over time and the pooling is
# nearly a plain mean. Larger logits make the test see the attention (the README gives the
# measured spread of the weights).
ATTENTION_GAIN = 10.0


# --------------------------------------------------------------------------------------------
# Loading the reference code


def load_reference():
    """Import the qwen-tts configuration and modeling modules of the TTS model (see the module
    docstring for the one stand-in module)."""
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
        ("qwen_tts.core.models", os.path.join("core", "models")),
        ("qwen_tts.inference", "inference"),
    ):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [os.path.join(root, sub)]
            sys.modules[name] = module
    stand_in = types.ModuleType("qwen_tts.inference.qwen3_tts_tokenizer")

    class Qwen3TTSTokenizer:  # placeholder: only named by the modeling module's imports
        pass

    stand_in.Qwen3TTSTokenizer = Qwen3TTSTokenizer
    sys.modules[stand_in.__name__] = stand_in
    cfg = importlib.import_module("qwen_tts.core.models.configuration_qwen3_tts")
    mdl = importlib.import_module("qwen_tts.core.models.modeling_qwen3_tts")
    return cfg, mdl


# --------------------------------------------------------------------------------------------
# Weights and inputs


def redraw(model: nn.Module, gen: torch.Generator) -> None:
    """Replace every weight by a seeded draw: conv weights N(0, 1/fan_in) (times
    ``ATTENTION_GAIN`` for the attention logits), biases N(0, 0.05).

    Tensors are visited in state-dict order, so the result depends only on ``gen``'s seed.
    """
    new = {}
    for name, old in model.state_dict().items():
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        if not isinstance(owner, nn.Conv1d):
            raise KeyError(f"no redraw rule for {name} ({type(owner).__name__})")
        if leaf == "weight":
            fan_in = owner.in_channels * owner.kernel_size[0]
            gain = ATTENTION_GAIN if name == "asp.conv.weight" else 1.0
            std = gain / math.sqrt(fan_in)
        else:
            std = 0.05
        value = torch.randn(old.shape, generator=gen, dtype=torch.float64) * std
        new[name] = value.to(old.dtype)
    model.load_state_dict(new, strict=True)


def make_clip(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Deterministic speech-like test signal ``[S]`` float32, peak 0.5.

    A harmonic tone whose pitch glides (a crude voiced sound), amplitude modulated at a
    syllable-like 4 Hz, plus seeded noise, so that mel frames differ in level and shape.
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    t = np.arange(n, dtype=np.float64) / rate
    f0 = 120.0 + 40.0 * seed + 30.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12) if k * f0.max() < rate / 2)
    envelope = 0.3 + 0.7 * np.clip(np.sin(2 * np.pi * 4.0 * t + seed), 0.0, None)
    sig = voiced * envelope + 0.1 * rng.standard_normal(n)
    return (0.5 * sig / np.max(np.abs(sig))).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Output


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed``, but with fixed zip time stamps: the same arrays give
    the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            # np.require, not np.ascontiguousarray: the latter turns 0-d arrays into [1].
            np.lib.format.write_array(buf, np.require(arr, requirements="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def describe(arrays: dict[str, np.ndarray]) -> str:
    return "\n".join(f"| `{k}` | {list(v.shape)} | {v.dtype} |" for k, v in arrays.items())


README = """# Tiny Qwen3-TTS speaker encoder: golden files

Generated by `tests/golden/make_qwen_tts_speaker.py` with the reference implementation of the
qwen-tts 0.1.1 package (`Qwen3TTSSpeakerEncoder`, `mel_spectrogram` and
`Qwen3TTSForConditionalGeneration.extract_speaker_embedding`; transformers 4.57.3, librosa
0.11.0, torch float32 on CPU) from randomly drawn weights (seeded; see the script). Regenerate
with the command in the script's docstring. On the processor that made them the files come out
the same byte for byte; on another one the weights and clips are identical but the log-mel
frames and embeddings move in their last bits (embeddings by up to 7e-7), which the tests'
tolerances allow (`tests/test_speaker_encoder.py`).

## `config.json`, `model.safetensors`

The speaker-encoder part of a Qwen3-TTS Base folder: `config.json` holds
`speaker_encoder_config` (every field written out) next to `model_type` `qwen3_tts` and
`tts_model_type` `base`; `model.safetensors` holds the float32 state dict of
`Qwen3TTSSpeakerEncoder` under the released prefix `speaker_encoder.` ({n_tensors} tensors,
{n_values} values).

Tiny sizes (the release's values in brackets): enc_channels [32, 32, 32, 32, 96]
[512, 512, 512, 512, 1536], enc_res2net_scale 4 [8], enc_se_channels 16 [128],
enc_attention_channels 16 [128], enc_dim 24 [1024 for 0.6B, 2048 for 1.7B]. Kept: mel_dim 128,
enc_kernel_sizes [5, 3, 3, 3, 1], enc_dilations [1, 2, 3, 4, 1], sample_rate 24000.

Weights are not the package's initialisation: conv weights are N(0, 1/fan_in) (the attention
conv `asp.conv` x{gain}, so that the attention weights are not nearly uniform: on clip `b`
the largest weight of a channel is, median over channels, {spread:.2f} times the uniform
1 / T), biases N(0, 0.05).

## `cases.npz`

Per clip `X`: `wav_X` is a deterministic speech-like signal (gliding harmonic tone, 4 Hz
amplitude modulation, seeded noise; peak 0.5) at `rate_X` Hz. `mel_X` [T, 128] is
`mel_spectrogram(wav24, n_fft=1024, num_mels=128, sampling_rate=24000, hop_size=256,
win_size=1024, fmin=0, fmax=12000)` transposed to frames first, and `emb_X` [{enc_dim}] is
`extract_speaker_embedding(wav24, 24000)`, where `wav24` is the clip itself at 24 kHz, or, for
clips at other rates, `librosa.resample(wav, orig_sr=rate, target_sr=24000)` (soxr "HQ"), as
`create_voice_clone_prompt` prepares reference audio; that resampled clip is `wav24_X`.

{clip_lines}

| array | shape | dtype |
| --- | --- | --- |
{table}
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
    import librosa  # the reference's resampler (imported after the version check)

    config = cfg_mod.Qwen3TTSSpeakerEncoderConfig(**SPEAKER_CONFIG)
    encoder = mdl_mod.Qwen3TTSSpeakerEncoder(config).eval().float()
    redraw(encoder, torch.Generator().manual_seed(20240602))

    # extract_speaker_embedding is a method of the full TTS model, which reads only
    # self.speaker_encoder, self.device and self.dtype: call it on a holder of those three.
    holder = types.SimpleNamespace(
        speaker_encoder=encoder, device=torch.device("cpu"), dtype=torch.float32
    )
    extract = mdl_mod.Qwen3TTSForConditionalGeneration.extract_speaker_embedding

    # The attention logits of the last call, to report the spread of the attention weights.
    logits: list[torch.Tensor] = []
    encoder.asp.conv.register_forward_hook(lambda _m, _i, out: logits.append(out.detach()))

    arrays: dict[str, np.ndarray] = {}
    clip_lines = []
    spread = float("nan")
    for seed, (name, seconds, rate) in enumerate(CLIPS):
        wav = make_clip(seconds, rate, seed)
        wav24 = wav
        if rate != SAMPLE_RATE:
            wav24 = librosa.resample(y=wav, orig_sr=rate, target_sr=SAMPLE_RATE)
            wav24 = np.asarray(wav24, dtype=np.float32)
        with torch.inference_mode():
            mel = mdl_mod.mel_spectrogram(
                torch.from_numpy(wav24).unsqueeze(0),
                n_fft=1024,
                num_mels=128,
                sampling_rate=SAMPLE_RATE,
                hop_size=256,
                win_size=1024,
                fmin=0,
                fmax=12000,
            ).transpose(1, 2)[0]
            emb = extract(holder, audio=wav24, sr=SAMPLE_RATE)
            # The embedding is the encoder applied to exactly this mel (a second check that
            # the mel above is the one extract_speaker_embedding computes).
            again = encoder(mel[None])[0]
        assert torch.equal(again, emb), "extract_speaker_embedding used another mel"
        if name == "b":
            weights = torch.softmax(logits[-1][0], dim=-1)  # [C, T]
            spread = float((weights.amax(dim=-1) * weights.shape[-1]).median())
        arrays[f"wav_{name}"] = wav
        arrays[f"rate_{name}"] = np.asarray(rate, dtype=np.int64)
        if rate != SAMPLE_RATE:
            arrays[f"wav24_{name}"] = wav24
        arrays[f"mel_{name}"] = mel.numpy().astype(np.float32)
        arrays[f"emb_{name}"] = emb.numpy().astype(np.float32)
        clip_lines.append(
            f"* `{name}`: {seconds} s at {rate} Hz ({wav.shape[0]} samples; {wav24.shape[0]} "
            f"at 24 kHz), {mel.shape[0]} mel frames, embedding std {float(emb.std()):.3f}."
        )
        if not float(emb.std()) > 0.05:
            raise SystemExit(f"degenerate embedding for clip {name}: std {float(emb.std())}")

    state = encoder.state_dict()
    save_file(
        {f"speaker_encoder.{k}": v.detach().contiguous() for k, v in state.items()},
        str(out / "model.safetensors"),
        metadata={"format": "pt"},
    )
    folder_config = {
        "model_type": "qwen3_tts",
        "tts_model_type": "base",
        "speaker_encoder_config": SPEAKER_CONFIG,
    }
    (out / "config.json").write_text(json.dumps(folder_config, indent=2) + "\n")
    save_npz(out / "cases.npz", arrays)

    readme = README.format(
        n_tensors=len(state),
        n_values=sum(v.numel() for v in state.values()),
        gain=ATTENTION_GAIN,
        spread=spread,
        enc_dim=SPEAKER_CONFIG["enc_dim"],
        clip_lines="\n".join(clip_lines),
        table=describe(arrays),
    )
    (out / "README.md").write_text(readme)

    print(f"wrote {out}")
    for line in clip_lines:
        print(" ", line)
    print(f"  attention: largest weight / uniform, median over channels (clip b): {spread:.2f}")


if __name__ == "__main__":
    main()
