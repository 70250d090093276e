"""Training audio: random fixed-length segments, reproducible from (seed, step, rank).

A batch depends only on the seed, the step and the process rank, never on what ran before, so a
resumed run draws exactly the batches an uninterrupted one would, and no sampler state has to
be saved. Segments are read lazily (soundfile seeks to the offset), downmixed and resampled, so
the corpus never has to fit in memory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from omnispeech.audio import prepare_audio
from omnispeech.errors import AudioFileError, ConfigError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def list_audio(
    source: str | Path, split: str | None = None, sample_rate: int | None = None
) -> list[Path]:
    """The audio files of a folder (recursively, sorted) or of a JSONL manifest (``path``).

    Args:
        source: a folder, or a manifest such as ``omnispeech data build`` writes.
        split: keep only manifest lines of this ``split`` (lines without one are kept), so
            that held-out voices stay held out; None keeps every line.
        sample_rate: take a line's file at this rate from its ``paths`` when it has one
            (e.g. the 24 kHz copy of a corpus built at 16 and 24 kHz), else its ``path``.

    Raises:
        ConfigError: a missing source, an unreadable manifest, or no audio at all.
    """
    src = Path(source)
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    elif src.is_file():
        files = []
        for n, line in enumerate(src.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if split is not None and entry.get("split", split) != split:
                    continue
                path = (entry.get("paths") or {}).get(str(sample_rate), entry["path"])
                files.append((src.parent / path).resolve())
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise ConfigError(f"{src}:{n}: expected a JSON object with a 'path'") from None
    else:
        raise ConfigError(f"{src}: no such audio folder or manifest")
    if not files:
        where = f" of split {split!r}" if split is not None and src.is_file() else ""
        raise ConfigError(f"{src}: no audio files{where} ({', '.join(AUDIO_SUFFIXES)})")
    return files


class SegmentSampler:
    """Draws batches of random segments ``[B, 1, segment]`` at ``sample_rate``.

    Files are chosen with probability proportional to their duration, offsets uniformly; a file
    shorter than a segment is zero-padded at the end.

    Args:
        files: audio files of any rate and channel count.
        sample_rate: output rate in Hz.
        segment_seconds: segment length.
        seed: the run's seed.
    """

    def __init__(
        self, files: list[Path], sample_rate: int, segment_seconds: float, seed: int
    ) -> None:
        self.files = files
        self.sample_rate = sample_rate
        self.segment = round(segment_seconds * sample_rate)
        self.seed = seed
        self.rates, self.frames = [], []
        for path in files:
            try:
                info = sf.info(str(path))
            except (sf.SoundFileError, RuntimeError) as err:
                raise AudioFileError(f"{path}: not a readable audio file ({err})") from None
            self.rates.append(int(info.samplerate))
            self.frames.append(int(info.frames))
        total = np.array(self.frames, dtype=np.float64)
        if total.sum() == 0:
            raise ConfigError("the training audio holds no samples")
        self.weights = total / total.sum()

    @property
    def hours(self) -> float:
        """Duration of the corpus."""
        return sum(f / r for f, r in zip(self.frames, self.rates, strict=True)) / 3600

    def batch(self, step: int, rank: int, batch_size: int) -> torch.Tensor:
        """The batch of ``rank`` at ``step``: ``[batch_size, 1, segment]`` float32."""
        rng = np.random.default_rng([self.seed, step, rank])
        picks = rng.choice(len(self.files), size=batch_size, p=self.weights)
        out = torch.zeros(batch_size, 1, self.segment)
        for i, index in enumerate(picks):
            clip = self._read(int(index), rng)
            out[i, 0, : clip.shape[0]] = torch.from_numpy(clip)
        return out

    def _read(self, index: int, rng: np.random.Generator) -> np.ndarray:
        rate, frames = self.rates[index], self.frames[index]
        # Source samples for one segment, plus a margin for the resampler's rounding.
        need = math.ceil(self.segment * rate / self.sample_rate) + 1
        start = int(rng.integers(0, max(frames - need, 0) + 1))
        path = self.files[index]
        try:
            data, _ = sf.read(str(path), start=start, frames=need, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as err:
            raise AudioFileError(f"{path}: not a readable audio file ({err})") from None
        if data.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        clip = prepare_audio(data, rate, self.sample_rate)
        return np.clip(clip[: self.segment], -1.0, 1.0)
