"""Synthesise a small speaker-labelled speech corpus with espeak-ng (for the CPU codec recipe).

Needs the `espeak-ng` program (Debian: `apt-get install espeak-ng`). Each voice variant of
espeak-ng acts as a speaker; the held-out speakers (``--valid-voices``) never appear in
training, so the validation score measures generalisation to new voices.

    python recipes/codec/espeak_corpus.py --out runs/espeak --per-voice 40

Writes ``OUT/train/*.wav`` and ``OUT/valid/*.wav`` (24 kHz mono) and ``OUT/manifest.jsonl``
(path, text, language, speaker, split, duration). Deterministic from ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import soundfile as sf

from omnispeech.audio import prepare_audio, save_audio

LANGUAGES = ("en-us", "de", "fr-fr", "es", "it", "nl", "pl", "pt")
TRAIN_VOICES = ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "klatt")
VALID_VOICES = ("m7", "f4")
SUBJECTS = ("the old sailor", "my sister", "a quiet engineer", "the children", "our neighbour")
VERBS = ("painted", "carried", "found", "opened", "forgot", "described", "measured")
OBJECTS = ("a green boat", "the heavy box", "seven letters", "the kitchen window", "a map")
ENDINGS = ("before noon", "in the rain", "without a word", "at the station", "last winter")


def sentence(rng: random.Random) -> str:
    """A short sentence with numbers, which every espeak-ng language reads in its own words."""
    words = [rng.choice(x) for x in (SUBJECTS, VERBS, OBJECTS, ENDINGS)]
    return f"{' '.join(words).capitalize()}, {rng.randint(2, 999)} {rng.randint(10, 99)}."


def synthesise(text: str, voice: str, pitch: int, speed: int, out: Path) -> float:
    """Speak ``text`` into ``out`` at 24 kHz; returns the duration in seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(raw), text]
        subprocess.run(cmd, check=True, capture_output=True)
        data, rate = sf.read(str(raw), dtype="float32")
    wav = prepare_audio(data, rate, 24000)
    save_audio(out, wav, 24000)
    return wav.shape[0] / 24000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-voice", type=int, default=40, help="sentences per voice")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    rng = random.Random(args.seed)
    manifest = []
    for split, voices in (("train", TRAIN_VOICES), ("valid", VALID_VOICES)):
        (args.out / split).mkdir(parents=True, exist_ok=True)
        for variant in voices:
            for i in range(args.per_voice):
                lang = LANGUAGES[i % len(LANGUAGES)]
                text = sentence(rng)
                path = args.out / split / f"{variant}_{i:03d}_{lang}.wav"
                pitch, speed = rng.randint(30, 70), rng.randint(140, 190)
                seconds = synthesise(text, f"{lang}+{variant}", pitch, speed, path)
                manifest.append(
                    {"path": str(path.relative_to(args.out)), "text": text, "language": lang,
                     "speaker": variant, "split": split, "duration": round(seconds, 3)}
                )  # fmt: skip
    with (args.out / "manifest.jsonl").open("w") as f:
        f.writelines(json.dumps(m) + "\n" for m in manifest)
    hours = sum(m["duration"] for m in manifest) / 3600
    print(f"{len(manifest)} utterances, {hours * 60:.1f} min, in {args.out}")


if __name__ == "__main__":
    main()
