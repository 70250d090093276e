"""Write a manifest of real recorded English speech shipped by Debian's pocketsphinx-testdata.

Recognition is trained on synthesised speech only; these recordings of people (a LibriVox
reading of *Sense and Sensibility*, spoken playing cards, "go forward ten meters") are for
evaluation, so that a real-speech score stays honest::

    apt-get install pocketsphinx-testdata
    python recipes/asr/real_speech.py --out real_en
    omnispeech eval asr real_en/manifest.jsonl --split all --languages en

The raw 16 kHz files are converted to wav; transcripts are the package's own.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import soundfile as sf

DATA = Path("/usr/share/pocketsphinx/test/data")
RAW = {"goforward.raw": "go forward ten meters"}


def _sphinx_transcripts(path: Path) -> dict[str, str]:
    """``<s> words </s> (id)`` lines -> {id: words}."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*(?:<s>)?\s*(.*?)\s*(?:</s>)?\s*\(([^)]+)\)\s*$", line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for wavs + manifest")
    parser.add_argument("--data", type=Path, default=DATA, help="pocketsphinx test data folder")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: not found; apt-get install pocketsphinx-testdata")
    args.out.mkdir(parents=True, exist_ok=True)
    items = []
    for folder, transcripts in (("librivox", "transcription"), ("cards", "cards.transcription")):
        texts = _sphinx_transcripts(args.data / folder / transcripts)
        wavs = sorted((args.data / folder).glob("*.wav"))
        for i, wav in enumerate(wavs):
            key = wav.stem if wav.stem in texts else f"{i + 1:03d}"
            if key in texts:
                items.append((wav, texts[key], f"{folder}-{wav.stem}"))
    lines = []
    for wav, text, name in items:
        data, rate = sf.read(wav, dtype="float32")
        sf.write(args.out / f"{name}.wav", data, rate)
        lines.append({"path": f"{name}.wav", "text": text, "language": "en", "speaker": name})
    for raw, text in RAW.items():
        samples = np.fromfile(args.data / raw, dtype="<i2").astype(np.float32) / 32768
        sf.write(args.out / raw.replace(".raw", ".wav"), samples, 16000)
        lines.append({"path": raw.replace(".raw", ".wav"), "text": text, "language": "en"})
    (args.out / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    print(f"{len(lines)} recordings -> {args.out / 'manifest.jsonl'}")


if __name__ == "__main__":
    main()
