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


def manifest_parser(description: str) -> argparse.ArgumentParser:
    """The arguments of a script that sends a manifest's recordings through a codec."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--codec", required=True, help="codec folder (Qwen3-TTS-Tokenizer layout)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--languages", default=None, help="comma-separated codes (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="utterances per language")
    return parser


def manifest_items(args: argparse.Namespace) -> tuple[Codec, list[tuple[Path, Path]]]:
    """The codec and, per chosen recording, its path and its ``.wav`` path relative to the
    manifest (what ``omnispeech eval tts`` looks up under an audio folder)."""
    languages = args.languages.split(",") if args.languages else None
    entries = read_manifest(args.manifest, args.split, languages, args.limit)
    root = args.manifest.resolve().parent
    items = [(e.path, Path(os.path.relpath(e.path, root)).with_suffix(".wav")) for e in entries]
    return Codec.from_pretrained(args.codec), items


def main() -> None:
    args = manifest_parser(__doc__.splitlines()[0]).parse_args()
    codec, items = manifest_items(args)
    for path, rel in tqdm(items, unit="utt", desc="resynthesising"):
        out = args.out / rel
        if out.is_file():
            continue
        wav = torch.from_numpy(load_audio(path, codec.sample_rate))[None, None]
        with torch.inference_mode():
            codes, frames = codec.encode(wav)
            audio = codec.decode(codes[:, :, : int(frames[0])])
        out.parent.mkdir(parents=True, exist_ok=True)
        save_audio(out, audio.unpadded()[0][: wav.shape[-1]].numpy(), codec.sample_rate)


if __name__ == "__main__":
    main()
