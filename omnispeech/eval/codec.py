"""Codec reconstruction quality on held-out audio.

Each file is encoded to codes and decoded back; the score is the multi-scale log-mel L1
distance (:func:`omnispeech.audio.mel_distance`) between the file and its reconstruction, so
0 is a perfect copy and near-silence against speech scores about 1.9.

A control decodes each file's codes with their frames in a random order. A codec whose codes
carry the signal scores much worse on it; one that only learnt an average spectrum (a
collapsed quantizer) scores the same, which the plain distance alone would not reveal.

With the ``eval`` extra installed (``pesq``, ``pystoi``), each file is also scored by
wide-band PESQ and STOI (:mod:`omnispeech.eval.signal`); these are perceptual measures with
published reference points (4.64 / 1.0 for a perfect copy), where the mel distance is only
comparable between runs of this package.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from omnispeech.audio import load_audio, mel_distance
from omnispeech.errors import InputError
from omnispeech.eval.report import format_table
from omnispeech.eval.signal import pesq_wb, signal_metrics_available, stoi
from omnispeech.pipelines import Codec


@dataclasses.dataclass(frozen=True)
class CodecScore:
    """Mel distance per file and their mean (lower is better).

    Attributes:
        per_file: ``{path: distance}``.
        mean: the mean over files.
        shuffled: the mean distance when the codes' frames are shuffled (the control).
        seconds: audio evaluated.
        pesq_wb: mean wide-band PESQ (higher is better; None without the ``eval`` extra, or
            when no file was long enough: PESQ needs 0.25 s).
        stoi: mean STOI (higher is better; None without the ``eval`` extra or files >= 0.4 s).
        per_file_pesq_wb: ``{path: PESQ}`` of the files PESQ could score.
        per_file_stoi: ``{path: STOI}`` of the files STOI could score.
    """

    per_file: dict[str, float]
    mean: float
    shuffled: float
    seconds: float
    pesq_wb: float | None = None
    stoi: float | None = None
    per_file_pesq_wb: dict[str, float] = dataclasses.field(default_factory=dict)
    per_file_stoi: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self, per_file: bool = True) -> dict[str, Any]:
        """JSON-ready summary (and every file's scores when ``per_file``)."""
        out: dict[str, Any] = {
            "task": "codec",
            "files": len(self.per_file),
            "seconds": round(self.seconds, 2),
            "mel_distance": self.mean,
            "mel_distance_shuffled_codes": self.shuffled,
            "pesq_wb": self.pesq_wb,
            "stoi": self.stoi,
        }
        if per_file:
            out["per_file"] = {
                path: {
                    "mel_distance": d,
                    "pesq_wb": self.per_file_pesq_wb.get(path),
                    "stoi": self.per_file_stoi.get(path),
                }
                for path, d in self.per_file.items()
            }
        return out

    def to_json(self, per_file: bool = True, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(per_file), indent=indent, ensure_ascii=False)

    def to_markdown(self, title: str = "Codec reconstruction") -> str:
        """A markdown report: the means, then one row per file."""
        summary = format_table(
            ["files", "seconds", "mel distance", "shuffled-codes control", "PESQ-WB", "STOI"],
            [
                [
                    len(self.per_file),
                    round(self.seconds, 2),
                    self.mean,
                    self.shuffled,
                    self.pesq_wb,
                    self.stoi,
                ]
            ],
        )
        rows = [
            [Path(p).name, d, self.per_file_pesq_wb.get(p), self.per_file_stoi.get(p)]
            for p, d in self.per_file.items()
        ]
        files = format_table(["file", "mel distance", "PESQ-WB", "STOI"], rows)
        return (
            f"## {title}\n\nMel distance: 0 = perfect copy, lower is better; the control "
            "decodes the codes with shuffled frames and should be clearly worse. PESQ-WB "
            "(1-4.64) and STOI (0-1): higher is better.\n\n" + summary + "\n" + files
        )


@torch.inference_mode()
def evaluate_codec(
    codec: Codec, files: Sequence[str | Path], max_seconds: float | None = 10.0
) -> CodecScore:
    """Reconstruct each file through ``codec`` and measure the mel distance (and wide-band
    PESQ and STOI when ``pesq`` and ``pystoi`` are installed).

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
    pesq_scores: dict[str, float] = {}
    stoi_scores: dict[str, float] = {}
    perceptual = signal_metrics_available()
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
        if perceptual:
            # Files too short for PESQ (0.25 s) or STOI (0.4 s) are left out of their means.
            try:
                pesq_scores[str(path)] = pesq_wb(wav, out, sr)
            except InputError:
                pass
            try:
                stoi_scores[str(path)] = stoi(wav, out, sr)
            except InputError:
                pass
    n = len(scores)
    return CodecScore(
        scores,
        sum(scores.values()) / n,
        sum(shuffled) / n,
        seconds,
        _mean(pesq_scores),
        _mean(stoi_scores),
        pesq_scores,
        stoi_scores,
    )


def _mean(values: dict[str, float]) -> float | None:
    return sum(values.values()) / len(values) if values else None
