"""How much each codebook adds: held-out mel distance when the decoder reads only the first k.

A split-RVQ codec (Qwen3-TTS-Tokenizer-12Hz layout) sums one semantic and K - 1 residual
codebook vectors per frame before its decoder. Decoding the sum of the first k alone (the rest
left out, as quantizer dropout did while training) shows where the detail lies: a distance
that stops falling after a few codebooks means the decoder, not the code, limits the sound.
It also prints each codebook's use (entries seen and entropy in bits) on the same files::

    python recipes/codec/codebooks.py corpus/manifest.jsonl --codec runs/codec/model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from omnispeech.audio import mel_distance
from omnispeech.kernels import use_backend
from omnispeech.pipelines import Codec


def first_k_latent(codec: Codec, codes: torch.Tensor, k: int) -> torch.Tensor:
    """``codes [1, K, T]`` -> the dequantised latent ``[1, D, T]`` of codebooks ``0..k-1``."""
    q = codec.decoder.quantizer
    size = codec.decoder.cfg.codebook_size
    latent = q.rvq_first(codes[:, : q.n_semantic])
    rest = codes[0, q.n_semantic : k]
    if rest.shape[0]:
        table = q.rvq_rest.table()
        summed = sum(table[j * size + rest[j]] for j in range(rest.shape[0]))  # [T, dim]
        latent = latent + torch.matmul(q.rvq_rest.output_proj.weight[:, :, 0], summed.T)[None]
    return latent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="corpus manifest (omnispeech data build)")
    parser.add_argument("--codec", required=True, help="exported codec folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--files", type=int, default=8, help="files spread over the split")
    parser.add_argument("--seconds", type=float, default=6.0, help="longest piece per file")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.manifest.read_text().splitlines() if line]
    rows = [r for r in rows if r.get("split") == args.split]
    if not rows:
        raise SystemExit(f"{args.manifest}: no lines of split {args.split!r}")
    picked = rows[:: max(1, len(rows) // args.files)][: args.files]
    codec = Codec.from_pretrained(args.codec)
    rate = codec.sample_rate
    k_all = codec.decoder.cfg.num_quantizers
    distances: dict[int, list[float]] = {k: [] for k in range(1, k_all + 1)}
    every: list[torch.Tensor] = []
    with use_backend("reference"), torch.no_grad():
        for row in picked:
            path = args.manifest.parent / row.get("paths", {}).get(str(rate), row["path"])
            wav, sr = sf.read(path, dtype="float32", always_2d=True)
            if sr != rate:
                raise SystemExit(f"{path}: {sr} Hz, the codec reads {rate} Hz")
            wav = torch.from_numpy(wav[: int(args.seconds * rate), 0])
            codes, _ = codec.encode(wav[None, None])
            every.append(codes[0])
            for k in distances:
                out = codec.decoder.decode_latent(first_k_latent(codec, codes, k))
                distances[k].append(mel_distance(out[0, 0, : wav.shape[0]], wav, rate))
    print(f"{len(picked)} {args.split} files, up to {args.seconds:g} s each")
    print("| codebooks | mel distance |\n| --- | --- |")
    for k, values in distances.items():
        print(f"| {k} | {np.mean(values):.4f} |")
    codes = torch.cat(every, dim=1).numpy()
    print(f"\n{codes.shape[1]} frames")
    print("| codebook | entries used | entropy (bits) |\n| --- | --- | --- |")
    for k, row in enumerate(codes):
        _, counts = np.unique(row, return_counts=True)
        p = counts / counts.sum()
        print(f"| {k} | {len(counts)} | {float(-(p * np.log2(p)).sum()):.2f} |")


if __name__ == "__main__":
    main()
