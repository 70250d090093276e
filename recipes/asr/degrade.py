"""Write degraded copies of a manifest's held-out split: noise, reverberation, telephone band.

The recogniser is augmented on the fly while it trains; this script makes the fixed test
conditions that show what the augmentation buys, the same for every model scored on them::

    python recipes/asr/degrade.py corpus/manifest.jsonl --out degraded --limit 20
    omnispeech eval asr degraded/manifest.jsonl --split noise
    omnispeech eval asr degraded/manifest.jsonl --split reverb
    omnispeech eval asr degraded/manifest.jsonl --split telephone

Each condition is a split of the written manifest (so one file serves all three):

- ``noise``: coloured noise (white to brown, or mains hum) at 10 dB SNR;
- ``reverb``: a synthetic room with a 0.6 s reverberation time;
- ``telephone``: 300-3400 Hz, 8 kHz sampling and G.711 mu-law, and back to 16 kHz.

The draws come from ``--seed`` and each utterance's line number, so a rerun writes the same
audio.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from omnispeech.audio import load_audio
from omnispeech.eval.asr import read_manifest
from omnispeech.training.augment import (
    add_noise,
    coloured_noise,
    reverberate,
    room_impulse,
    telephone,
)

SAMPLE_RATE = 16_000
NOISE_SNR_DB = 10.0
REVERB_RT60 = 0.6


def _noise(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return add_noise(wav, coloured_noise(rng, wav.shape[0]), NOISE_SNR_DB)


def _reverb(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    wet = reverberate(wav, room_impulse(rng, REVERB_RT60))
    # Same peak as the dry speech: the condition is the room, not a level change.
    return wet * (np.abs(wav).max() / max(float(np.abs(wet).max()), 1e-9))


def _telephone(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return telephone(wav)


CONDITIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "noise": _noise,
    "reverb": _reverb,
    "telephone": _telephone,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="corpus manifest (JSONL)")
    parser.add_argument("--out", type=Path, required=True, help="folder for wavs + manifest")
    parser.add_argument("--split", default="test", help="split to degrade (default: test)")
    parser.add_argument("--languages", default=None, help="comma-separated codes (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="utterances per language")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    languages = args.languages.split(",") if args.languages else None
    entries = read_manifest(args.manifest, args.split, languages, args.limit)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = []
    for entry in tqdm(entries, desc="degrading", unit="utt"):
        wav = load_audio(entry.path, SAMPLE_RATE)
        for name, degrade in CONDITIONS.items():
            rng = np.random.default_rng([args.seed, entry.line, len(lines)])
            out = np.clip(degrade(wav, rng), -1.0, 1.0).astype(np.float32)
            path = args.out / name / f"{entry.line:06d}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, out, SAMPLE_RATE, subtype="PCM_16")
            lines.append(
                {
                    "path": str(path.relative_to(args.out)),
                    "text": entry.text,
                    "language": entry.language,
                    "speaker": entry.speaker,
                    "split": name,
                    "duration": round(out.shape[0] / SAMPLE_RATE, 3),
                }
            )
    with (args.out / "manifest.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    print(f"{len(entries)} utterances x {len(CONDITIONS)} conditions -> {args.out}")


if __name__ == "__main__":
    main()
