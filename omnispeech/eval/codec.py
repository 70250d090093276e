"""Codec reconstruction quality on held-out audio.

Each file is encoded to codes and decoded back; the score is the multi-scale log-mel L1
distance (:func:`omnispeech.audio.mel_distance`) between the file and its reconstruction, so
0 is a perfect copy and near-silence against speech scores about 1.9.

A control decodes each file's codes with their frames in a random order. A codec whose codes
carry the signal scores much worse on it; one that only learnt an average spectrum (a
collapsed quantizer) scores the same, which the plain distance alone would not reveal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from omnispeech.audio import load_audio, mel_distance
from omnispeech.pipelines import Codec


@dataclasses.dataclass(frozen=True)
class CodecScore:
    """Mel distance per file and their mean (lower is better).

    Attributes:
        per_file: ``{path: distance}``.
        mean: the mean over files.
        shuffled: the mean distance when the codes' frames are shuffled (the control).
        seconds: audio evaluated.
    """

    per_file: dict[str, float]
    mean: float
    shuffled: float
    seconds: float


@torch.inference_mode()
def evaluate_codec(
    codec: Codec, files: Sequence[str | Path], max_seconds: float | None = 10.0
) -> CodecScore:
    """Reconstruct each file through ``codec`` and measure the mel distance.

    Args:
        codec: the codec to measure.
        files: audio files (any rate and channel count; resampled and downmixed).
        max_seconds: evaluate at most this much of each file (None: all of it).

    Raises:
        ValueError: no files.
    """
    if not files:
        raise ValueError("no files to evaluate")
    sr = codec.sample_rate
    scores, shuffled, seconds = {}, [], 0.0
    order = torch.Generator().manual_seed(0)
    for path in files:
        wav = torch.from_numpy(load_audio(path, sr))
        if max_seconds is not None:
            wav = wav[: round(max_seconds * sr)]
        codes, frames = codec.encode(wav[None, None])
        out = codec.decode(codes, frames).wav[0, 0, : wav.shape[0]]
        scores[str(path)] = mel_distance(out, wav, sr)
        perm = torch.randperm(codes.shape[-1], generator=order)
        control = codec.decode(codes[..., perm], frames).wav[0, 0, : wav.shape[0]]
        shuffled.append(mel_distance(control, wav, sr))
        seconds += wav.shape[0] / sr
    n = len(scores)
    return CodecScore(scores, sum(scores.values()) / n, sum(shuffled) / n, seconds)
