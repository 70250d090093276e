"""Copy a TTS export into the package as the bundled model, its weights stored in bfloat16.

The loaders read any floating tensor at the dtype they run in (float32 by default), so 16-bit
storage halves the size in git and changes only the rounding of the weights. The script says
what that rounding does: both folders speak the same held-out sentences greedily from the same
reference clip, and it prints how many frames agree and how far their lengths lie apart::

    python recipes/tts/ship.py runs/tts_aria/model --out omnispeech/bundled/tts-small --contrast 2

``--contrast`` sets the shipped folder's speaker contrast strength (see
:mod:`omnispeech.talker.contrast`; the export holds the centre at strength 1); the centre itself
stays in float32 (one vector: rounding it would save nothing). ``--guidance`` sets the
classifier-free guidance scale the shipped folder's ``generation_config.json`` declares (for a
talker trained with ``data.guidance_dropout``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omnispeech.bundled import store_bf16
from omnispeech.pipelines.tts import TTS
from omnispeech.pipelines.tts_generation import read_generation, write_generation
from omnispeech.talker import GenerationConfig, SpeakerContrast

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "examples" / "austen.wav"
SENTENCES = ("The file could not be opened.", "Please close the window before you leave.")


def compare(model: Path, out: Path) -> dict:
    """Greedy speech of the full-precision and the shipped folder on the same sentences."""
    full, shipped = TTS.from_pretrained(model), TTS.from_pretrained(out)
    greedy = GenerationConfig.greedy().replace(guidance=shipped.generation.guidance)
    full.speaker_contrast = shipped.speaker_contrast  # only the weights' rounding differs
    same = total = 0
    gaps = []
    for text in SENTENCES:
        a = full.codes(text, full.voice(CLIP), language="en", seed=0, generation=greedy)
        b = shipped.codes(text, shipped.voice(CLIP), language="en", seed=0, generation=greedy)
        n = min(a.shape[1], b.shape[1])
        same += int((a[:, :n] == b[:, :n]).all(dim=0).sum())
        total += max(a.shape[1], b.shape[1])
        # the codec's own frame length (80 ms at 12.5 Hz, 40 ms at 25 Hz)
        gaps.append(abs(a.shape[1] - b.shape[1]) / full.codec.frame_rate)
    return {
        "frames_equal": f"{same} of {total}",
        "length_gap_s_max": round(max(gaps), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="OUT/model of `omnispeech train tts`")
    parser.add_argument("--out", type=Path, default=ROOT / "omnispeech" / "bundled" / "tts-small")
    parser.add_argument(
        "--contrast", type=float, default=None, help="speaker contrast strength (default: kept)"
    )
    parser.add_argument(
        "--guidance", type=float, default=None, help="guidance scale to declare (default: kept)"
    )
    args = parser.parse_args()
    store_bf16(args.model, args.out)
    if args.guidance is not None:
        gen_path = args.out / "generation_config.json"
        write_generation(gen_path, read_generation(gen_path).replace(guidance=args.guidance))
    contrast = SpeakerContrast.load(args.model)
    if contrast is None and args.contrast is not None:
        parser.error(f"{args.model} has no speaker centre (export it with this version)")
    if contrast is not None:
        strength = contrast.strength if args.contrast is None else args.contrast
        contrast.with_strength(strength).save(args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(json.dumps({"written": str(args.out), "mb": round(size / 1e6, 2)}))
    print(json.dumps(compare(args.model, args.out)))


if __name__ == "__main__":
    main()
