"""Where a codec loses the words: the same held-out recordings through each stage, for a judge.

Writes one folder of audio per variant, each mirroring the manifest's relative paths as
``omnispeech eval tts`` looks them up::

    python recipes/codec/where_lost.py corpus/manifest.jsonl --codec runs/codec/model \\
        --out lost --languages en --limit 60
    for v in quantized unquantized first1 first4 rephased mel_griffin_lim mel_40ms mel_80ms; do
        omnispeech eval tts lost/$v corpus/manifest.jsonl --languages en --limit 60 \\
            --no-similarity --json lost/$v.json
    done

- ``quantized``: the codec as it runs (all codebooks).
- ``unquantized``: the decoder reads the encoder's latent through the quantizer's projections
  but without rounding to codebook vectors. Equal to ``quantized``: the codes are not the limit.
- ``first1`` / ``first4``: only the first k codebooks (what quantizer dropout trained).
- ``rephased``: the codec's output, its log-mel inverted by Griffin-Lim. Equal to
  ``quantized``: the spectral envelope is wrong, not only the phase.
- ``mel_griffin_lim``: the recording's own log-mel (100 bins, 1024-point STFT) inverted by
  Griffin-Lim: what a decoder that got the log-mel right would score even with crude phase.
- ``mel_40ms`` / ``mel_80ms``: the recording's log-mel (80 bins, 10 ms hop) averaged over
  blocks of 40 / 80 ms and held constant in each, then inverted the same way: one spectral
  envelope per frame of a 25 Hz / 12.5 Hz codec, with no detail inside the frame.
"""

from __future__ import annotations

import sys
from pathlib import Path

import librosa
import numpy as np
import torch
from tqdm import tqdm

from omnispeech.audio import load_audio, save_audio
from omnispeech.pipelines import Codec

RECIPES = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(RECIPES / "codec"), str(RECIPES / "tts")]
from codebooks import first_k_latent  # noqa: E402 - the sibling recipes' helpers
from resynthesize import manifest_items, manifest_parser  # noqa: E402

RATE = 24000
STFT = {"sr": RATE, "n_fft": 1024, "hop_length": 256}


def griffin_lim(wav: np.ndarray) -> np.ndarray:
    """Waveform -> its mel power spectrogram inverted with 32 Griffin-Lim iterations."""
    mel = librosa.feature.melspectrogram(y=wav, n_mels=100, **STFT)
    return _invert(mel, 2.0, STFT)[: wav.size]


def block_mel_griffin_lim(wav: np.ndarray, block: int) -> np.ndarray:
    """Waveform -> its log-mel held constant over ``block`` 10 ms frames, inverted likewise."""
    stft = {"sr": RATE, "n_fft": 1024, "hop_length": RATE // 100}
    mel = librosa.feature.melspectrogram(y=wav, n_mels=80, power=1, **stft)
    log = np.log(np.maximum(mel, 1e-5))
    frames = log.shape[1]
    padded = np.pad(log, ((0, 0), (0, -frames % block)), mode="edge")
    blocks = padded.reshape(log.shape[0], -1, block).mean(-1)
    held = np.exp(np.repeat(blocks, block, axis=1)[:, :frames])
    return _invert(held, 1.0, stft)[: wav.size]


def _invert(mel: np.ndarray, power: float, stft: dict) -> np.ndarray:
    """Mel spectrogram -> waveform: 32 Griffin-Lim iterations from a seeded random phase, so
    a variant's audio (and its score) is the same on every run."""
    keys = {"sr": stft["sr"], "n_fft": stft["n_fft"]}
    mag = librosa.feature.inverse.mel_to_stft(mel, power=power, **keys)
    return librosa.griffinlim(
        mag, n_iter=32, hop_length=stft["hop_length"], n_fft=stft["n_fft"], random_state=0
    )


@torch.inference_mode()
def variants(codec: Codec, wav: np.ndarray) -> dict[str, np.ndarray]:
    """``wav [S]`` at 24 kHz -> each variant's waveform ``[S]``."""
    net, dec = codec.encoder.net, codec.decoder
    q = dec.quantizer
    x = torch.from_numpy(wav)[None, None]
    latent = net.latent(x)
    codes = net.quantize(latent)
    sem = net.quantizer.semantic_residual_vector_quantizer.input_proj(latent)
    rest = net.quantizer.acoustic_residual_vector_quantizer.input_proj(latent)
    latents = {
        "quantized": q(codes),
        "unquantized": q.rvq_first.output_proj(sem) + q.rvq_rest.output_proj(rest),
        "first1": first_k_latent(codec, codes, 1),
        "first4": first_k_latent(codec, codes, 4),
    }
    out = {
        name: dec.decode_latent(lat)[0, 0, : wav.size].clamp(-1, 1).numpy()
        for name, lat in latents.items()
    }
    out["rephased"] = griffin_lim(out["quantized"])
    out["mel_griffin_lim"] = griffin_lim(wav)
    out["mel_40ms"] = block_mel_griffin_lim(wav, 4)
    out["mel_80ms"] = block_mel_griffin_lim(wav, 8)
    return out


def main() -> None:
    args = manifest_parser(__doc__.splitlines()[0]).parse_args()
    codec, items = manifest_items(args)
    for source, rel in tqdm(items, unit="utt", desc="decoding"):
        for name, audio in variants(codec, load_audio(source, RATE)).items():
            path = args.out / name / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            save_audio(path, audio.astype(np.float32), RATE)


if __name__ == "__main__":
    main()
