"""Copy a codec export into the package as the bundled codec, its weights stored in bfloat16.

The loaders read any floating tensor at the dtype they run in (float32 by default), so 16-bit
storage halves the size in git and changes only the rounding of the weights. The script says
what that rounding does on held-out audio: how many codes the two folders agree on, and the
mel distance of each reconstruction to the recording::

    python recipes/codec/ship.py runs/codec25/model --manifest corpus/manifest.jsonl

It ships as the bundled voice's ``speech_tokenizer/`` (a Qwen3-TTS folder holds its codec
there), so the codec is stored once. Codes made with the shipped folder are what a talker
trained on it should learn: train the talker with
``--codec omnispeech/bundled/tts-small/speech_tokenizer``, not with the full-precision export.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from omnispeech.audio import load_audio
from omnispeech.audio.spectral import mel_distance
from omnispeech.bundled import store_bf16
from omnispeech.pipelines import Codec

ROOT = Path(__file__).resolve().parents[2]


def held_out(manifest: Path, per_language: int) -> list[Path]:
    """The first ``per_language`` test-split recordings of each language of a corpus
    manifest, at 24 kHz where the corpus has that rate (``omnispeech.eval.read_manifest``
    gives each line's first rate, 16 kHz in the bundled corpus, which the codec would only
    see resampled)."""
    files, counts = [], {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        language = item.get("language", "")
        if item.get("split") == "test" and counts.get(language, 0) < per_language:
            counts[language] = counts.get(language, 0) + 1
            files.append(manifest.parent / item.get("paths", {}).get("24000", item["path"]))
    return files


def compare(model: Path, out: Path, files: list[Path], seconds: float = 10.0) -> dict:
    """Codes and reconstructions of the full-precision and the shipped folder on ``files``."""
    full, shipped = Codec.from_pretrained(model), Codec.from_pretrained(out)
    same = total = 0
    distances: dict[str, list[float]] = {"full": [], "shipped": []}
    for path in files:
        wav = torch.from_numpy(load_audio(path, full.sample_rate))
        wav = wav[: round(seconds * full.sample_rate)]
        for name, codec in (("full", full), ("shipped", shipped)):
            codes, frames = codec.encode(wav[None, None])
            if name == "full":
                reference = codes
            else:
                same += int((codes == reference).sum())
                total += codes.numel()
            out_wav = codec.decode(codes, frames).wav[0, 0, : wav.shape[0]]
            distances[name].append(mel_distance(out_wav, wav, codec.sample_rate))
    return {
        "files": len(files),
        "codes_equal": round(same / max(total, 1), 4),
        "mel_distance_full": round(sum(distances["full"]) / len(files), 4),
        "mel_distance_shipped": round(sum(distances["shipped"]) / len(files), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="OUT/model of `omnispeech train codec`")
    parser.add_argument("--manifest", type=Path, required=True, help="corpus manifest.jsonl")
    parser.add_argument("--per-language", type=int, default=6, help="held-out files each")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "omnispeech" / "bundled" / "tts-small" / "speech_tokenizer",
    )
    args = parser.parse_args()
    store_bf16(args.model, args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(json.dumps({"written": str(args.out), "mb": round(size / 1e6, 2)}))
    files = held_out(args.manifest, args.per_language)
    print(json.dumps(compare(args.model, args.out, files)))


if __name__ == "__main__":
    main()
