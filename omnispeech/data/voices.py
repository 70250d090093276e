"""More voices from a corpus's own: its training recordings again, resampled faster or slower.

A talker learns to follow the speaker vector only as well as its training voices cover the
space of voices; a corpus of offline engines has a few dozen. Playing a recording ``f`` times
faster by resampling moves its pitch and every formant by ``f`` together (as a shorter or
longer vocal tract would) and its tempo by ``f``: speaker-recognition recipes count such a copy
as a new speaker, and so does this module. Resampling adds no artefact for a codec to learn,
unlike a phase vocoder, which would keep the tempo but smear the phase.

Each training utterance of the corpus gets one copy at one of the ``factors`` (drawn per
utterance from ``seed``), written beside the originals as ``wav{RATE}/{lang}/{id}-s{f}.wav`` at
every rate the utterance has, with the speaker ``{speaker}-s{f}``; the held-out splits are left
alone, so their voices stay unseen. A new manifest lists the corpus's records and the copies;
the original ``manifest.jsonl`` is not touched. Rerunning reuses the copies already written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from omnispeech.audio.io import change_speed
from omnispeech.data.stats import read_manifest
from omnispeech.errors import InputError

# The factors the bundled voice's recipe uses: about 1.3 and 2.6 semitones either way, as far
# as a voice can move before it stops sounding like a person.
DEFAULT_FACTORS = (0.86, 0.93, 1.07, 1.16)


@dataclass(frozen=True)
class VoicesResult:
    """What :func:`perturb_voices` wrote.

    Attributes:
        manifest: the new manifest (the corpus's records, then the copies).
        copies: copies listed in it (one per training utterance).
        written: copies resampled now (the others were on disk from an earlier run).
        speakers: speakers of the training split before and after (originals plus copies).
        seconds: audio added, in seconds.
    """

    manifest: Path
    copies: int
    written: int
    speakers: tuple[int, int]
    seconds: float


def check_factors(factors: Sequence[float]) -> tuple[float, ...]:
    """The factors, validated: each in (0.5, 2) and not 1; at least one, none repeated."""
    out = tuple(float(f) for f in factors)
    if not out:
        raise InputError("no speed factors: give at least one, e.g. 0.9,1.1")
    for f in out:
        if not 0.5 < f < 2.0 or f == 1.0:
            raise InputError(f"speed factor {f}: give factors in (0.5, 2) other than 1")
    if len({_tag(f) for f in out}) != len(out):
        raise InputError(f"speed factors {list(out)}: two of them round to the same voice")
    return out


def _tag(factor: float) -> str:
    # 1.07 -> "s107": the suffix of the copy's id and speaker.
    return f"s{round(factor * 100)}"


def _renamed(rel: str, tag: str) -> str:
    # wav24000/en/en-000001.wav -> wav24000/en/en-000001-s107.wav
    path = Path(rel)
    return str(path.with_name(f"{path.stem}-{tag}{path.suffix}"))


def _files(record: dict) -> list[str]:
    """The record's audio files, relative to the corpus: one per rate, or its one path."""
    return list((record.get("paths") or {"": record["path"]}).values())


def _copy(job: tuple[Path, float, list[tuple[str, str]]]) -> tuple[float, bool]:
    """Write one copy (every (source, copy) file pair) unless it exists; returns (seconds at
    the first file, whether anything was written now)."""
    root, factor, pairs = job
    seconds, new = 0.0, False
    for i, (src, rel) in enumerate(pairs):
        dst = root / rel
        if dst.exists():
            if i == 0:
                seconds = sf.info(str(dst)).duration
            continue
        wav, sr = sf.read(str(root / src), dtype="float32")
        if wav.ndim > 1:
            wav = wav.mean(axis=1)
        y = np.clip(change_speed(wav, factor, sr), -1.0, 1.0)
        dst.parent.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name first: an interrupted run leaves no half file.
        tmp = dst.with_suffix(".part.wav")
        sf.write(str(tmp), y, sr, subtype="PCM_16")
        os.replace(tmp, dst)
        new = True
        if i == 0:
            seconds = y.shape[0] / sr
    return seconds, new


def plan_copies(
    records: Sequence[dict], factors: Sequence[float], seed: int, split: str
) -> list[tuple[dict, dict]]:
    """(record, copy record) for every ``split`` record: each drawn one factor from ``seed``."""
    factors = check_factors(factors)
    chosen = [r for r in records if r.get("split") == split]
    if not chosen:
        raise InputError(f"no {split!r} utterances in the manifest: nothing to copy")
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(factors), size=len(chosen))
    plan = []
    for record, k in zip(chosen, picks, strict=True):
        factor = factors[int(k)]
        tag = _tag(factor)
        copy = {
            **record,
            "id": f"{record['id']}-{tag}",
            "speaker": f"{record.get('speaker', '')}-{tag}",
            "path": _renamed(record["path"], tag),
            "duration": round(float(record.get("duration", 0.0)) / factor, 3),
            "resampled": factor,
        }
        if record.get("paths"):
            copy["paths"] = {rate: _renamed(rel, tag) for rate, rel in record["paths"].items()}
        plan.append((record, copy))
    return plan


def perturb_voices(  # noqa: PLR0913 - the corpus and how to copy it
    corpus: Path,
    factors: Sequence[float] = DEFAULT_FACTORS,
    out: str = "manifest.voices.jsonl",
    seed: int = 0,
    split: str = "train",
    workers: int = 1,
) -> VoicesResult:
    """Copy every ``split`` utterance of ``corpus`` at one speed factor, as a new voice.

    Args:
        corpus: a corpus folder (``manifest.jsonl`` inside) or its manifest file.
        factors: speed factors (1.1 is 10 % faster and higher); each in (0.5, 2), not 1.
        out: the new manifest's file name, written in the corpus folder.
        seed: draws each utterance's factor.
        split: the split to copy; the others are listed unchanged.
        workers: processes resampling at once.

    Raises:
        InputError: no manifest, no ``split`` utterances, bad factors, or ``out`` would
            overwrite the corpus's own manifest.
    """
    corpus = Path(corpus)
    root = corpus if corpus.is_dir() else corpus.parent
    source = corpus / "manifest.jsonl" if corpus.is_dir() else corpus
    target = root / out
    if Path(out).name != out:
        raise InputError(f"{out!r}: give a file name; the manifest is written in {root}")
    if target.resolve() == source.resolve():
        raise InputError(f"{target}: that is the corpus's own manifest; name another file")
    records = read_manifest(source)
    plan = plan_copies(records, factors, seed, split)
    jobs = [(root, c["resampled"], list(zip(_files(r), _files(c), strict=True))) for r, c in plan]
    seconds, written = 0.0, 0
    progress = dict(total=len(jobs), desc="voices", unit="utt", smoothing=0.05)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = tqdm(pool.map(_copy, jobs, chunksize=32), **progress)
            for s, new in results:
                seconds, written = seconds + s, written + int(new)
    else:
        for s, new in tqdm(map(_copy, jobs), **progress):
            seconds, written = seconds + s, written + int(new)
    tmp = target.with_suffix(".part")
    with tmp.open("w") as f:
        for record in [*records, *(copy for _, copy in plan)]:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, target)
    before = {r.get("speaker", "") for r, _ in plan}
    after = before | {c["speaker"] for _, c in plan}
    return VoicesResult(target, len(plan), written, (len(before), len(after)), seconds)
