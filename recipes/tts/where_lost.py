"""Where a TTS model loses the words: its own speech with the recording's first k codebooks.

For each held-out sentence the model speaks as usual (voice cloned from another recording of
the speaker, as ``omnispeech eval tts --synthesize`` clones it), except that the first ``k``
codes of every frame are replaced by the recording's own (the codec's codes of that recording,
frame by frame; codec_eos after its last frame). The talker and code predictor read those codes
as if they had drawn them, and the predictor draws codebooks ``k..K-1`` with the folder's
sampling. ``k`` = 1 asks whether the talker's codebook 0 limits the words; larger ``k`` how much
of the rest the code predictor loses. Writes the folder layout ``omnispeech eval tts`` judges::

    python recipes/tts/where_lost.py corpus/manifest.jsonl --out lost/k1 --codebooks 1
    omnispeech eval tts lost/k1 corpus/manifest.jsonl --languages en --limit 60 --json k1.json

The codes are replaced where they are drawn (the sampling functions of the talker and the code
predictor are wrapped for the run), so every other step is the pipeline's own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import soundfile as sf
import torch
from tqdm import tqdm

import omnispeech.talker.code_predictor as code_predictor_module
import omnispeech.talker.model as talker_module
from omnispeech.eval import plan_clones, read_manifest
from omnispeech.pipelines.tts import TTS


class Forcing:
    """Replaces drawn codes by the recording's: ``codes`` ``[K, N]``, the first ``k`` of each
    frame (codebook 0 through the talker's draw, the others through the predictor's)."""

    def __init__(self, k: int, eos: int) -> None:
        self.k, self.eos = k, eos
        self.codes = torch.empty(0, 0, dtype=torch.long)
        self.frame = self.group = 0
        self._talker, self._predictor = talker_module.sample, code_predictor_module.sample

    def talker(self, logits, cfg, generator=None, history=None, suppress=None):  # noqa: ANN001
        got = self._talker(logits, cfg, generator, history, suppress)  # draws as usual
        self.frame, self.group = history.shape[1], 0  # frames made so far = this frame's index
        N = self.codes.shape[1]
        got[:] = int(self.codes[0, self.frame]) if self.frame < N else self.eos
        return got

    def predictor(self, logits, cfg, generator=None):  # noqa: ANN001
        got = self._predictor(logits, cfg, generator)
        self.group += 1  # the predictor draws codebooks 1, 2, ... of the frame in order
        if self.group < self.k and self.frame < self.codes.shape[1]:
            got[:] = int(self.codes[self.group, self.frame])
        return got

    def __enter__(self) -> Forcing:
        talker_module.sample, code_predictor_module.sample = self.talker, self.predictor
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        talker_module.sample, code_predictor_module.sample = self._talker, self._predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder of audio to judge")
    parser.add_argument("--codebooks", type=int, default=1, help="k: codebooks taken as recorded")
    parser.add_argument("--model", default=None, help="TTS folder (default: the bundled voice)")
    parser.add_argument("--languages", default="en")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    entries = read_manifest(args.manifest, "test", args.languages.split(","), args.limit)
    pool = read_manifest(args.manifest, "test")
    plans = plan_clones(entries, pool, args.out, args.manifest.resolve().parent)
    tts = TTS.from_pretrained(args.model)
    if not 1 <= args.codebooks <= tts.talker.num_code_groups:
        parser.error(f"--codebooks must lie in 1..{tts.talker.num_code_groups}")
    with Forcing(args.codebooks, tts.talker.spec.tokens.codec_eos) as forcing:
        for plan in tqdm(plans, unit="utt"):
            forcing.codes = tts.codec.encode_file(plan.entry.path)
            ref = plan.reference
            voice = tts.voice(ref.path, language=ref.language)
            text, language = plan.entry.text, plan.entry.language
            codes = tts.codes(text, voice, language=language, seed=args.seed)
            n = codes.shape[1]
            k = args.codebooks
            assert torch.equal(codes[:k], forcing.codes[:k, :n]), "the codes were not forced"
            with torch.inference_mode():
                audio = tts.codec.decode(codes[None])
            plan.out.parent.mkdir(parents=True, exist_ok=True)
            sf.write(plan.out, audio.wav[0, 0, : int(audio.lengths[0])].numpy(), tts.sample_rate)


if __name__ == "__main__":
    main()
