"""Build a synthetic multilingual multi-speaker speech corpus: plan, synthesise, write a manifest.

The corpus folder holds::

    wav16000/LANG/ID.wav, wav24000/LANG/ID.wav   one file per utterance and sample rate
    meta/LANG/ID.json                            what each utterance is (or why it was dropped)
    manifest.jsonl                               the kept utterances, in plan order

The plan (which sentence, voice, speed and pitch each utterance gets, and each speaker's split)
depends only on the seed, the sentences and the voices, so a rerun with the same arguments gives
the same manifest. ``meta/`` makes the build resumable: an utterance whose record matches the
plan is not synthesised again, and the manifest is rebuilt from the records, in plan order.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import tempfile
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from omnispeech.audio import prepare_audio, save_audio
from omnispeech.data.engines import Engine, SynthesisError, Voice, default_engines
from omnispeech.data.text import Sentence, gather_sentences
from omnispeech.errors import InputError

SPLITS = ("train", "dev", "test")
_CHARS_PER_SECOND = 14.0  # espeak-ng at 175 wpm reads about 14 characters a second
_CJK_CHARS_PER_SECOND = 5.0  # one Hanzi / kana is about a syllable
_SILENT_PEAK = 1e-3  # -60 dBFS: below this the engine produced no speech
_TRIM_DB = 40.0  # frames 40 dB under the loudest 10 ms frame count as silence
_PAD_SECONDS = 0.05  # silence kept at each end after trimming
_MIN_SECONDS = 0.3  # shorter than one syllable: the engine skipped the text
_TARGET_RMS_DB = -20.0  # loudness target; then the peak is limited to _PEAK_DB
_PEAK_DB = -1.0


class EngineMissingWarning(UserWarning):
    """A TTS engine is not installed; its voices are skipped."""


@dataclass(frozen=True)
class BuildConfig:
    """What to build.

    Args:
        out: corpus folder (created; an existing one is resumed).
        hours: audio to aim for, in hours, spread evenly over the languages.
        languages: ISO 639 codes, or None for every language with text and a voice.
        seed: seeds the plan (sentences, voices, speed, pitch, splits).
        workers: synthesis processes (1 = in this process).
        redistributable: keep only voices and texts whose licences allow shipping a model.
        sample_rates: output rates in Hz; the manifest's ``path`` is at the first one.
        min_sentences: at least this many distinct sentences per language (if it has them),
            even if ``hours`` would need fewer.
        dev_fraction: share of the speakers held out for dev (and as many for test).
    """

    out: Path
    hours: float
    languages: tuple[str, ...] | None = None
    seed: int = 0
    workers: int = 1
    redistributable: bool = False
    sample_rates: tuple[int, ...] = (16000, 24000)
    min_sentences: int = 0
    dev_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not self.hours > 0:
            raise InputError(f"hours must be positive, got {self.hours!r}")
        if self.workers < 1:
            raise InputError(f"workers must be at least 1, got {self.workers!r}")
        if not self.sample_rates or any(r <= 0 for r in self.sample_rates):
            raise InputError(f"sample_rates must be positive rates in Hz: {self.sample_rates}")
        if not 0 <= self.dev_fraction < 0.5:
            raise InputError(f"dev_fraction must be in [0, 0.5), got {self.dev_fraction}")


@dataclass(frozen=True)
class Utterance:
    """One planned utterance: who says what, how, and in which split."""

    id: str
    text: str
    language: str
    voice: Voice
    text_source: str
    text_licence: str
    speed: float  # speaking-rate factor, 1.0 = the voice's default
    pitch: float  # pitch factor, 1.0 = the voice's default
    split: str


@dataclass
class BuildResult:
    """What a build did.

    Args:
        kept: utterances in the manifest.
        seconds: their total duration, in seconds.
        synthesised: utterances synthesised by this run (the rest were resumed).
        dropped: utterances dropped, by reason (``silent``, ``too_short``, ``engine_error``).
        manifest: path of the manifest written.
    """

    kept: int = 0
    seconds: float = 0.0
    synthesised: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    manifest: Path | None = None


def usable_engines(engines: Sequence[Engine] | None = None) -> list[Engine]:
    """The installed engines; each missing one gives one :class:`EngineMissingWarning`."""
    found = []
    for engine in default_engines() if engines is None else engines:
        if engine.available():
            found.append(engine)
        else:
            warnings.warn(engine.install_hint(), EngineMissingWarning, stacklevel=2)
    return found


def available_voices(
    engines: Sequence[Engine], languages: set[str], redistributable: bool = False
) -> dict[str, list[Voice]]:
    """``{language: [Voice, ...]}`` over ``engines`` for ``languages`` (engines in order)."""
    result: dict[str, list[Voice]] = {}
    for engine in engines:
        for voice in engine.voices(languages):
            if voice.redistributable or not redistributable:
                result.setdefault(voice.language, []).append(voice)
    return result


def check_languages(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The requested language codes, checked against the available ones (None: all).

    Raises:
        InputError: an unknown code, in one line that says how to list the available ones.
    """
    if requested is None:
        return sorted(available)
    unknown = [code for code in requested if code not in available]
    if unknown:
        raise InputError(
            f"unknown or unavailable language code(s): {', '.join(unknown)}; "
            "run `omnispeech data languages` to see the available ones"
        )
    return sorted(dict.fromkeys(requested))


def assign_splits(speakers: Sequence[str], seed: int, dev_fraction: float) -> dict[str, str]:
    """Speaker id -> split; dev and test each get ``dev_fraction`` of the speakers (at least
    one when there are 3 or more), so no speaker is in two splits."""
    order = sorted(set(speakers))
    random.Random(f"{seed}:splits").shuffle(order)
    n_held = max(1, round(dev_fraction * len(order))) if len(order) >= 3 and dev_fraction else 0
    split = {s: "train" for s in order}
    split.update({s: "dev" for s in order[:n_held]})
    split.update({s: "test" for s in order[n_held : 2 * n_held]})
    return split


def _estimated_seconds(text: str, language: str) -> float:
    rate = _CJK_CHARS_PER_SECOND if language in {"zh", "ja", "yue"} else _CHARS_PER_SECOND
    return len(text) / rate


def split_sentences(
    order: Sequence[Sentence], held: Sequence[str], dev_fraction: float
) -> dict[str, str]:
    """Sentence text -> split: ``dev_fraction`` of the (shuffled) sentences for each held-out
    split in ``held`` that has voices in the language, the rest for train, so no sentence is
    spoken in two splits.

    A held-out split gets at least one sentence, but never so many that train is left with
    fewer than half of them.
    """
    texts = list(dict.fromkeys(s.text for s in order))
    cap = len(texts) // (2 * max(len(held), 1))
    n_held = min(max(round(dev_fraction * len(texts)), 1), cap)
    split = {t: "train" for t in texts}
    start = 0
    for name in held:
        split.update({t: name for t in texts[start : start + n_held]})
        start += n_held
    return split


def plan_corpus(
    sentences: dict[str, list[Sentence]], voices: dict[str, list[Voice]], config: BuildConfig
) -> list[Utterance]:
    """The utterances to build, deterministic from ``config.seed``.

    Each language gets ``hours / len(languages)`` of estimated audio (at least
    ``min_sentences`` sentences); its sentences are used in a seeded shuffled order, each once
    before any repeats. Splits are by speaker *and* by sentence: every speaker belongs to one
    split (the same in every language), every sentence of a language to one split, and a
    sentence is spoken only by voices of its split. Within a split, engines take turns (so a
    language's few natural voices get as many utterances as its many espeak-ng variants), and
    voices take turns within an engine.
    """
    languages = sorted(set(sentences) & set(voices))
    if config.languages is not None:
        languages = [lang for lang in languages if lang in config.languages]
    if not languages:
        return []
    splits = assign_splits(
        [v.speaker for lang in languages for v in voices[lang]], config.seed, config.dev_fraction
    )
    per_language = config.hours * 3600 / len(languages)
    plan = []
    for lang in languages:
        rng = random.Random(f"{config.seed}:{lang}")
        order = list(sentences[lang])
        rng.shuffle(order)
        # split -> engine -> voices, each list in a seeded order.
        groups: dict[str, dict[str, list[Voice]]] = {}
        for voice in voices[lang]:
            groups.setdefault(splits[voice.speaker], {}).setdefault(voice.engine, []).append(voice)
        engine_names = {name: sorted(g) for name, g in groups.items()}
        for name in sorted(groups):
            rng.shuffle(engine_names[name])
            for engine in engine_names[name]:
                rng.shuffle(groups[name][engine])
        if "train" not in groups:
            continue  # no training voice: the language is not planned (nothing to learn from)
        count = _planned_count(order, lang, per_language, config.min_sentences)
        # Only the sentences the plan speaks are split, so each split gets its share of them.
        held = [name for name in ("dev", "test") if name in groups]
        sentence_split = split_sentences(order[:count], held, config.dev_fraction)
        turns: Counter[str] = Counter()  # utterances planned per split (voice rotation)
        for i in range(count):
            sentence = order[i % len(order)]
            split = sentence_split[sentence.text]
            names, turn = engine_names[split], turns[split]
            group = groups[split][names[turn % len(names)]]
            voice = group[(turn // len(names)) % len(group)]
            turns[split] += 1
            plan.append(
                Utterance(
                    id=f"{lang}-{i:06d}",
                    text=sentence.text,
                    language=lang,
                    voice=voice,
                    text_source=sentence.source.name,
                    text_licence=sentence.source.licence,
                    speed=round(rng.uniform(0.85, 1.15), 3),
                    pitch=round(rng.uniform(0.85, 1.15), 3),
                    split=split,
                )
            )
    return plan


def _planned_count(order: Sequence[Sentence], lang: str, seconds: float, min_sentences: int) -> int:
    """Utterances a language gets: enough for ``seconds`` of estimated audio (sentences
    reused in order when there are too few), and at least ``min_sentences`` where it has them."""
    total, count = 0.0, 0
    while total < seconds or (count < min_sentences and count < len(order)):
        total += _estimated_seconds(order[count % len(order)].text, lang)
        count += 1
    return count


def trim_and_normalise(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Trim leading/trailing silence, then set the loudness and limit the peak.

    Args:
        wav: ``[S]`` float mono samples.
        sample_rate: its rate in Hz.

    Returns:
        ``[S']`` float32: from 50 ms before the first to 50 ms after the last 10 ms frame within
        40 dB of the loudest one, scaled to -20 dBFS RMS with the peak at most -1 dBFS.
    """
    hop = max(1, sample_rate // 100)
    n = len(wav) // hop
    frames = wav[: n * hop].reshape(n, hop) if n else wav[None, :]
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (-_TRIM_DB / 20))
    pad = round(_PAD_SECONDS * sample_rate)
    start = max(0, int(loud[0]) * hop - pad)
    end = min(len(wav), (int(loud[-1]) + 1) * hop + pad)
    x = wav[start:end].astype(np.float64)
    x *= 10 ** (_TARGET_RMS_DB / 20) / max(float(np.sqrt(np.mean(x**2))), 1e-9)
    peak = float(np.abs(x).max())
    if peak > 10 ** (_PEAK_DB / 20):
        x *= 10 ** (_PEAK_DB / 20) / peak
    return x.astype(np.float32)


def _relative(rate: int, utt: Utterance) -> str:
    return f"wav{rate}/{utt.language}/{utt.id}.wav"


def _record_matches(record: dict, utt: Utterance) -> bool:
    """Whether a record holds the audio ``utt`` plans (its split may have changed since)."""
    got = tuple(record.get(k) for k in ("text", "voice", "engine", "speed", "pitch"))
    return got == (utt.text, utt.voice.name, utt.voice.engine, utt.speed, utt.pitch)


def _meta_path(out: Path, utt: Utterance) -> Path:
    return out / "meta" / utt.language / f"{utt.id}.json"


def render(utt: Utterance, engine: Engine, config: BuildConfig) -> tuple[dict, bool]:
    """Synthesise one utterance (or reuse its record); returns (record, synthesised now).

    The record is the manifest line, or ``{"id", "text", "voice", "engine", "dropped"}`` for
    an utterance the engine could not speak: a failure, no sound, or under 0.3 s of sound.
    It is written last, atomically, so an interrupted build redoes the utterance.
    """
    meta = _meta_path(config.out, utt)
    if meta.exists():
        record = json.loads(meta.read_text())
        if _record_matches(record, utt):
            # The split is the plan's: another set of speakers reshuffles the splits.
            if "dropped" not in record:
                record["split"] = utt.split
            return record, False
    record = {"id": utt.id, "text": utt.text, "voice": utt.voice.name, "engine": engine.name}
    record.update(speed=utt.speed, pitch=utt.pitch)
    with tempfile.TemporaryDirectory(dir=config.out / ".tmp") as tmp:
        raw = Path(tmp) / "raw.wav"
        try:
            engine.synthesise(utt.text, utt.voice, raw, utt.speed, utt.pitch)
            data, rate = sf.read(str(raw), dtype="float32", always_2d=True)
        except (SynthesisError, sf.SoundFileError, RuntimeError) as err:
            record["dropped"] = "engine_error"
            record["error"] = str(err)[:200]
            data, rate = None, 0
    if data is not None:
        wav = data.mean(axis=1)
        if wav.size == 0 or float(np.abs(wav).max()) < _SILENT_PEAK:
            record["dropped"] = "silent"
        else:
            wav = trim_and_normalise(wav, rate)
            if len(wav) < _MIN_SECONDS * rate:
                record["dropped"] = "too_short"
    if "dropped" not in record:
        paths = {}
        for target in config.sample_rates:
            rel = _relative(target, utt)
            (config.out / rel).parent.mkdir(parents=True, exist_ok=True)
            out = prepare_audio(wav, rate, target)
            # Resampling can overshoot the limited peak by a few percent: limit it again.
            out *= min(1.0, 10 ** (_PEAK_DB / 20) / max(float(np.abs(out).max()), 1e-9))
            save_audio(config.out / rel, out, target)
            paths[str(target)] = rel
        v = utt.voice
        record = {
            "id": utt.id,
            "path": paths[str(config.sample_rates[0])],
            "paths": paths,
            "text": utt.text,
            "language": utt.language,
            "speaker": v.speaker,
            "voice": v.name,
            "engine": v.engine,
            "licence": v.licence,
            "text_source": utt.text_source,
            "text_licence": utt.text_licence,
            "redistributable": v.redistributable,
            "duration": round(len(wav) / rate, 3),
            "split": utt.split,
            "speed": utt.speed,
            "pitch": utt.pitch,
        }
    meta.parent.mkdir(parents=True, exist_ok=True)
    tmp_meta = meta.with_suffix(".tmp")
    tmp_meta.write_text(json.dumps(record, ensure_ascii=False))
    os.replace(tmp_meta, meta)
    return record, True


_WORKER: dict = {}  # engines and config of a worker process (set once by _init_worker)


def _init_worker(engines: dict[str, Engine], config: BuildConfig) -> None:
    _WORKER["engines"], _WORKER["config"] = engines, config


def _render_job(utt: Utterance) -> tuple[dict, bool]:
    return render(utt, _WORKER["engines"][utt.voice.engine], _WORKER["config"])


def build_corpus(
    config: BuildConfig,
    engines: Sequence[Engine] | None = None,
    sentences: dict[str, list[Sentence]] | None = None,
    progress: bool = True,
) -> BuildResult:
    """Build (or resume) the corpus ``config`` describes.

    Args:
        config: what to build.
        engines: engines to use (default: every known one); missing ones are skipped with an
            :class:`EngineMissingWarning` naming the Debian package.
        sentences: ``{language: [Sentence]}`` (default: :func:`gather_sentences`).
        progress: show a tqdm progress bar.

    Returns:
        The counts; the manifest is at ``config.out / "manifest.jsonl"``.

    Raises:
        InputError: an unknown language, or no engine installed.
    """
    from tqdm import tqdm

    found = usable_engines(engines)
    if not found:
        raise InputError("no TTS engine is installed; at least: apt-get install espeak-ng")
    if config.languages is not None:
        # Codes no engine speaks fail here, before the catalogs are read (tens of seconds).
        voiced = available_voices(found, set(config.languages), config.redistributable)
        check_languages(config.languages, sorted(voiced))
    if sentences is None:
        sentences = gather_sentences(redistributable=config.redistributable)
    voices = available_voices(found, set(sentences), config.redistributable)
    check_languages(config.languages, sorted(set(sentences) & set(voices)))
    plan = plan_corpus(sentences, voices, config)
    (config.out / ".tmp").mkdir(parents=True, exist_ok=True)
    by_name = {e.name: e for e in found}
    records: dict[str, dict] = {}
    result = BuildResult()
    bar = tqdm(total=len(plan), unit="utt", disable=not progress, desc="synthesising")
    if config.workers == 1:
        _init_worker(by_name, config)
        jobs = map(_render_job, plan)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(
            config.workers, initializer=_init_worker, initargs=(by_name, config)
        )
        # Several utterances per task: one call is ~10 ms for espeak-ng, as cheap as the IPC.
        jobs = pool.imap_unordered(_render_job, plan, chunksize=8)
    try:
        for record, synthesised in jobs:
            records[record["id"]] = record
            result.synthesised += synthesised
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    manifest = config.out / "manifest.jsonl"
    with manifest.open("w") as f:
        for utt in plan:  # plan order, whatever order the workers finished in
            record = records[utt.id]
            if "dropped" in record:
                result.dropped[record["dropped"]] += 1
                continue
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            result.kept += 1
            result.seconds += record["duration"]
    result.manifest = manifest
    summary = {"config": {k: str(v) for k, v in asdict(config).items()}, "kept": result.kept,
               "hours": result.seconds / 3600, "dropped": dict(result.dropped)}  # fmt: skip
    (config.out / "build.json").write_text(json.dumps(summary, indent=1))
    return result
