"""Synthesise a manifest's held-out utterances by cloning each one's speaker from another clip.

For every selected utterance, the TTS model says its text in the voice of its speaker, cloned
from a *different* recording of the same speaker (so the model never hears the sentence it is
scored on): by default the longest other clip of that speaker in the same language, or, with
``cross_language``, in another language when the speaker has one (cloning across languages).
The result is a folder that :func:`omnispeech.eval.tts.evaluate_tts` scores, mirroring the
manifest's relative paths.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omnispeech.audio import save_audio
from omnispeech.errors import InputError
from omnispeech.eval.asr import ManifestEntry


@dataclasses.dataclass(frozen=True)
class ClonePlan:
    """One utterance to synthesise: its manifest entry, the clip its voice comes from, and
    where the audio goes."""

    entry: ManifestEntry
    reference: ManifestEntry
    out: Path


def plan_clones(
    entries: Sequence[ManifestEntry],
    pool: Sequence[ManifestEntry],
    folder: str | Path,
    root: str | Path,
    cross_language: bool = False,
) -> list[ClonePlan]:
    """Pick each entry's reference clip from ``pool`` (another recording of its speaker).

    Args:
        entries: the utterances to synthesise (each must name its ``speaker``).
        pool: where references come from (usually the whole manifest split).
        folder: the output folder.
        root: the manifest's folder (output paths mirror the entries' paths below it).
        cross_language: prefer a reference in another language than the text.

    Raises:
        InputError: an entry without a speaker, or a speaker with no other recording.
    """
    by_speaker: dict[str, list[ManifestEntry]] = {}
    for item in pool:
        by_speaker.setdefault(item.speaker, []).append(item)
    plans = []
    for entry in entries:
        if not entry.speaker:
            raise InputError(f"manifest line {entry.line}: no speaker to clone")
        others = [e for e in by_speaker.get(entry.speaker, []) if e.path != entry.path]
        if not others:
            raise InputError(
                f"manifest line {entry.line}: speaker {entry.speaker!r} has no other "
                "recording to clone the voice from"
            )
        same = [e for e in others if e.language == entry.language]
        other = [e for e in others if e.language != entry.language]
        choice = (other or same) if cross_language else (same or other)
        # The longest clip gives the speaker encoder the most to go on (it scores 3-15 s best).
        reference = max(choice, key=lambda e: (min(e.duration or 0.0, 15.0), -e.line))
        relative = Path(os.path.relpath(entry.path, root))
        if relative.is_absolute() or ".." in relative.parts:
            relative = Path(entry.path.name)
        plans.append(ClonePlan(entry, reference, Path(folder) / relative.with_suffix(".wav")))
    return plans


def synthesize_plans(
    tts: Any,
    plans: Sequence[ClonePlan],
    in_context: bool = False,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Synthesise every plan whose output file does not exist yet.

    Args:
        tts: an :class:`omnispeech.pipelines.TTS` that can clone.
        plans: from :func:`plan_clones`.
        in_context: give the reference's transcript too (in-context cloning) instead of its
            speaker vector alone.
        seed: sampling seed of every utterance (same seed, same audio).
        progress: called with 1 after each plan.

    Returns:
        How many files were written (existing ones are kept, so a stopped run resumes).
    """
    written = 0
    for plan in plans:
        if not plan.out.is_file():
            ref = plan.reference
            voice = tts.voice(
                ref.path, ref_text=ref.text if in_context else None, language=ref.language
            )
            wav = tts.synthesize(plan.entry.text, voice, language=plan.entry.language, seed=seed)
            plan.out.parent.mkdir(parents=True, exist_ok=True)
            # Written under a temporary name first: an interrupted run leaves no half file.
            partial = plan.out.with_suffix(".partial.wav")
            save_audio(partial, wav, tts.sample_rate)
            partial.replace(plan.out)
            written += 1
        if progress is not None:
            progress(1)
    return written


__all__ = ["ClonePlan", "plan_clones", "synthesize_plans"]
