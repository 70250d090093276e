"""Voices for speaker-encoder training: manifests, reproducible crops, light augmentation.

A batch depends only on (seed, step, rank): speakers, utterances, crop offsets, the crop length
and the augmentations are drawn by a generator seeded with those three numbers, so a resumed
run draws exactly the batches an uninterrupted one would and no sampler state is saved. Crops
are read lazily (soundfile seeks to the offset) and resampled to 24 kHz when a manifest line
lists no 24 kHz copy, so the corpus never has to fit in memory.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from omnispeech.audio import prepare_audio
from omnispeech.errors import AudioFileError, ConfigError
from omnispeech.talker.speaker import SAMPLE_RATE
from omnispeech.training.augment import add_noise, broadband_noise
from omnispeech.training.speaker_config import SpeakerDataConfig


@dataclasses.dataclass(frozen=True)
class VoiceClip:
    """One utterance of a manifest: the audio file (its 24 kHz copy when the manifest lists
    one), the speaker id, the file's sample rate (Hz) and its length in samples."""

    path: Path
    speaker: str
    rate: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def read_voices(manifest: str | Path, split: str = "") -> tuple[list[VoiceClip], Counter[str]]:
    """The usable utterances of a JSONL manifest, and the skipped ones counted by reason
    (``missing`` file, ``unreadable`` audio, ``no_speaker``).

    Args:
        manifest: one JSON object per line with ``path`` (relative to the manifest), optionally
            ``paths`` by sample rate (``{"24000": ...}`` is read when present), ``speaker``
            (a voice id such as ``espeak-ng:en+m3``) and ``split``.
        split: keep only lines of this split (empty: all).

    Raises:
        ConfigError: no such manifest, a line that is not a JSON object with a ``path``, or no
            usable utterance at all.
    """
    src = Path(manifest)
    if not src.is_file():
        raise ConfigError(f"{src}: no such manifest (a JSONL file with path and speaker)")
    found: list[VoiceClip] = []
    skipped: Counter[str] = Counter()
    for n, line in enumerate(src.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            path = (entry.get("paths") or {}).get(str(SAMPLE_RATE), entry["path"])
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise ConfigError(f"{src}:{n}: expected a JSON object with a 'path'") from None
        if split and entry.get("split") != split:
            continue
        speaker = str(entry.get("speaker") or "")
        if not speaker:
            skipped["no_speaker"] += 1
            continue
        file = (src.parent / path).resolve()
        if not file.is_file():
            skipped["missing"] += 1
            continue
        try:
            info = sf.info(str(file))
        except (sf.SoundFileError, RuntimeError):
            skipped["unreadable"] += 1
            continue
        if info.frames <= 0 or info.samplerate <= 0:
            skipped["unreadable"] += 1
            continue
        found.append(VoiceClip(file, speaker, int(info.samplerate), int(info.frames)))
    if not found:
        what = f" of split {split!r}" if split else ""
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "none listed"
        raise ConfigError(f"{src}: no usable utterances{what} (skipped: {reasons})")
    return found, skipped


def read_crop(clip: VoiceClip, seconds: float, offset: float) -> np.ndarray:
    """``seconds`` of ``clip`` at 24 kHz, starting at ``offset`` (0..1) of the room the file
    leaves; a shorter file is repeated to fill the crop (a loop of the same voice, not
    silence, which would pull the pooled statistics towards the front end's floor).

    Returns:
        ``[round(seconds * 24000)]`` float32 mono samples in [-1, 1].

    Raises:
        AudioFileError: the file cannot be decoded.
    """
    size = round(seconds * SAMPLE_RATE)
    # Source samples for one crop, plus one for the resampler's rounding.
    need = math.ceil(size * clip.rate / SAMPLE_RATE) + 1
    start = int(offset * max(clip.frames - need, 0))
    try:
        data, _ = sf.read(str(clip.path), start=start, frames=need, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as err:
        raise AudioFileError(f"{clip.path}: not a readable audio file ({err})") from None
    wav = data.mean(axis=1)
    if clip.rate != SAMPLE_RATE:
        wav = prepare_audio(wav, clip.rate, SAMPLE_RATE)
    if wav.shape[0] == 0:
        raise AudioFileError(f"{clip.path}: no samples")
    wav = np.tile(wav, -(-size // wav.shape[0]))[:size]
    return np.clip(wav, -1.0, 1.0).astype(np.float32)


@dataclasses.dataclass
class SpeakerBatch:
    """One batch: ``wav`` ``[B, S]`` float32 at 24 kHz (one crop length per batch) and
    ``labels`` ``[B]`` training-speaker indices."""

    wav: torch.Tensor
    labels: torch.Tensor

    @property
    def seconds(self) -> float:
        """Audio in the batch."""
        return self.wav.numel() / SAMPLE_RATE

    def to(self, device: torch.device) -> SpeakerBatch:
        return SpeakerBatch(self.wav.to(device), self.labels.to(device))


class SpeakerBatcher:
    """Draws augmented crops of the training speakers.

    Each crop's speaker is drawn uniformly (a speaker with many utterances is not learnt more
    than one with few), then one of its utterances and an offset in it.

    Args:
        clips: the training set; ``speakers`` lists its distinct speakers, sorted, whose
            positions are the labels.
        cfg: crop lengths, batch size and augmentation.
        seed: the run's seed.
    """

    def __init__(self, clips: Sequence[VoiceClip], cfg: SpeakerDataConfig, seed: int) -> None:
        self.cfg = cfg
        self.seed = seed
        self.speakers = sorted({c.speaker for c in clips})
        by_speaker: dict[str, list[VoiceClip]] = {s: [] for s in self.speakers}
        for clip in clips:
            by_speaker[clip.speaker].append(clip)
        self.by_speaker = [by_speaker[s] for s in self.speakers]

    def batch(self, step: int, rank: int) -> SpeakerBatch:
        """The batch of process ``rank`` at ``step``."""
        cfg = self.cfg
        rng = np.random.default_rng([self.seed, step, rank])
        seconds = float(rng.uniform(*cfg.crop_seconds))
        labels = rng.integers(len(self.speakers), size=cfg.batch_size)
        crops = []
        for label in labels.tolist():
            own = self.by_speaker[label]
            clip = own[int(rng.integers(len(own)))]
            wav = read_crop(clip, seconds, float(rng.random()))
            if rng.random() < cfg.p_noise:
                # White to brown noise, the backgrounds a microphone hears.
                noise = broadband_noise(rng, wav.shape[0], SAMPLE_RATE)
                wav = add_noise(wav, noise, float(rng.uniform(*cfg.snr_db)))
            if rng.random() < cfg.p_gain:
                wav = wav * 10 ** (float(rng.uniform(*cfg.gain_db)) / 20)
            crops.append(np.clip(wav, -1.0, 1.0))
        return SpeakerBatch(torch.from_numpy(np.stack(crops)), torch.from_numpy(labels))


def held_out(clips: Sequence[VoiceClip], count: int) -> list[VoiceClip]:
    """About ``count`` clips for verification: up to ``count // 2`` speakers spread evenly
    over the sorted ids, then their clips taken from each speaker in turn, so that every
    speaker has at least two clips to pair (when it has them) while the set visits as many
    speakers as that allows. Clips shorter than the encoder's 1-s minimum are left out."""
    by_speaker: dict[str, list[VoiceClip]] = {}
    for clip in sorted(clips, key=lambda c: (c.speaker, str(c.path))):
        if clip.seconds >= 1.0:
            by_speaker.setdefault(clip.speaker, []).append(clip)
    queues = list(by_speaker.values())
    keep = min(len(queues), max(1, count // 2))
    queues = [queues[i * len(queues) // keep] for i in range(keep)]
    out: list[VoiceClip] = []
    depth = 0
    while len(out) < count and any(depth < len(q) for q in queues):
        out += [q[depth] for q in queues if depth < len(q)][: count - len(out)]
        depth += 1
    return out
