"""Pass a manifest's held-out recordings through a codec: what the talker could say at best.

A TTS model can be no clearer than its codec's reconstruction of real speech. Scoring that
reconstruction with the same judge as the synthesised speech splits the loss between the two::

    python recipes/tts/resynthesize.py corpus/manifest.jsonl --codec runs/codec/model \\
        --out resynth --languages en --limit 60
    omnispeech eval tts resynth corpus/manifest.jsonl --languages en --limit 60

The files mirror the manifest's relative paths, as ``omnispeech eval tts`` looks them up.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from tqdm import tqdm

from omnispeech.audio import load_audio, save_audio
from omnispeech.eval.asr import read_manifest
from omnispeech.pipelines import Codec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--codec", required=True, help="codec folder (Qwen3-TTS-Tokenizer layout)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--languages", default=None, help="comma-separated codes (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="utterances per language")
    args = parser.parse_args()
    languages = args.languages.split(",") if args.languages else None
    entries = read_manifest(args.manifest, args.split, languages, args.limit)
    codec = Codec.from_pretrained(args.codec)
    root = args.manifest.resolve().parent
    for entry in tqdm(entries, unit="utt", desc="resynthesising"):
        out = args.out / Path(os.path.relpath(entry.path, root)).with_suffix(".wav")
        if out.is_file():
            continue
        wav = torch.from_numpy(load_audio(entry.path, codec.sample_rate))[None, None]
        with torch.inference_mode():
            codes, frames = codec.encode(wav)
            audio = codec.decode(codes[:, :, : int(frames[0])])
        out.parent.mkdir(parents=True, exist_ok=True)
        save_audio(out, audio.unpadded()[0][: wav.shape[-1]].numpy(), codec.sample_rate)


if __name__ == "__main__":
    main()
