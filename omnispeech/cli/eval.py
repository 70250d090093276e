"""``omnispeech eval``: measure models on held-out audio."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from omnispeech.cli.checks import check_output_file
from omnispeech.cli.codec import codec_model_option

F = TypeVar("F", bound=Callable[..., Any])


def _report_options(command: F) -> F:
    """``--json FILE`` and ``--report FILE.md``: the full score as JSON and as markdown."""
    command = click.option(
        "--report",
        "report_path",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE.md",
        help="Also write a markdown report (tables per language) to this file.",
    )(command)
    return click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Also write the full score as JSON (every utterance / file) to this file.",
    )(command)


def _selection_options(command: F) -> F:
    """``--split``, ``--languages`` and ``--limit`` of the manifest commands."""
    command = click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=None,
        help="Evaluate at most N utterances per language.",
    )(command)
    command = click.option(
        "--languages",
        multiple=True,
        metavar="CODES",
        help="Only these language codes (comma-separated or repeated), e.g. en,zh.",
    )(command)
    return click.option(
        "--split",
        default="test",
        show_default=True,
        help="Manifest split to evaluate; 'all' for every line.",
    )(command)


def _languages(values: tuple[str, ...]) -> list[str] | None:
    codes = [c.strip() for v in values for c in v.split(",") if c.strip()]
    return codes or None


def _check_reports(json_path: Path | None, report_path: Path | None) -> None:
    """Refuse report files that could not be written, before the (long) evaluation runs."""
    for option, path in (("--json", json_path), ("--report", report_path)):
        if path is not None:
            check_output_file(path, option)


def _write(score: Any, json_path: Path | None, report_path: Path | None) -> None:
    """Write the report files, turning file-system errors into one line."""
    from omnispeech.eval import write_report

    try:
        write_report(score, json_path, report_path)
    except OSError as exc:
        raise click.ClickException(f"cannot write the report: {exc}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def eval_() -> None:
    """Measure the quality of omnispeech models on your own held-out audio.

    \b
    Examples:
      omnispeech eval codec held_out/ --model ./Qwen3-TTS-Tokenizer-12Hz
      omnispeech eval codec a.wav b.flac -m runs/codec/model --per-file --report codec.md
      omnispeech eval asr corpus/manifest.jsonl --model ./Qwen3-ASR-0.6B --json asr.json
      omnispeech eval tts synth/ corpus/manifest.jsonl --asr-model ./Qwen3-ASR-0.6B

    \b
    A manifest is JSONL, one utterance per line:
      {"path": "clips/1.wav", "text": "...", "language": "en", "speaker": "s1",
       "split": "test", "duration": 1.5}
    (path and text required; path relative to the manifest's folder).
    """


@eval_.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@codec_model_option
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Evaluate at most this much of each file.",
)
@click.option("--per-file", is_flag=True, help="Also print the distance of every file.")
@_report_options
def codec(  # noqa: PLR0913 - one parameter per CLI option
    inputs: tuple[Path, ...],
    model: str | None,
    max_seconds: float,
    per_file: bool,
    json_path: Path | None,
    report_path: Path | None,
) -> None:
    """Reconstruct INPUTS (files, or folders of .wav/.flac/.ogg) through a codec and print the
    multi-scale log-mel distance as JSON (0 = a perfect copy; lower is better).

    The control `mel_distance_shuffled_codes` decodes the codes with their frames shuffled: it
    should be clearly worse; if it is not, the codes carry nothing (a collapsed codec). With
    the eval extra installed, wide-band PESQ (1-4.64) and STOI (0-1) are added (higher is
    better; null without it).
    """
    from omnispeech.bundled import DEFAULTS
    from omnispeech.errors import OmnispeechError
    from omnispeech.eval import evaluate_codec
    from omnispeech.pipelines import Codec

    _check_reports(json_path, report_path)

    suffixes = (".wav", ".flac", ".ogg")
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in suffixes)
        else:
            files.append(item)
    if not files:
        raise click.ClickException("no audio files among the inputs (.wav, .flac, .ogg)")
    try:
        score = evaluate_codec(Codec.from_pretrained(model), files, max_seconds)
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
    report = {
        "model": str(model or DEFAULTS["codec"]),
        "files": len(files),
        "seconds": round(score.seconds, 2),
        "mel_distance": score.mean,
        "mel_distance_shuffled_codes": score.shuffled,
        "pesq_wb": score.pesq_wb,
        "stoi": score.stoi,
    }
    if per_file:
        report["per_file"] = score.per_file
    _write(score, json_path, report_path)
    click.echo(json.dumps(report, indent=2))


@eval_.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option(
    "--model",
    "-m",
    default=None,
    envvar="OMNISPEECH_ASR_MODEL",
    metavar="FOLDER",
    help="Qwen3-ASR checkpoint folder (default: the bundled model).",
)
@_selection_options
@click.option(
    "--detect-language",
    is_flag=True,
    help="Let the model detect each language instead of telling it the manifest's.",
)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda.")
@click.option(
    "--ctc-weight",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    metavar="W",
    help="CTC share of each decoding choice, 0-1 (see `omnispeech asr --help`). Default: the "
    "model's own.",
)
@click.option(
    "--int8",
    is_flag=True,
    help="Score the model with its text decoder stored as int8, as `omnispeech asr --int8` "
    "runs it (compare with a run without to see what int8 costs).",
)
@_report_options
def asr(  # noqa: PLR0913 - one parameter per CLI option
    manifest: Path,
    model: str | None,
    split: str,
    languages: tuple[str, ...],
    limit: int | None,
    detect_language: bool,
    device: str,
    ctc_weight: float | None,
    int8: bool,
    json_path: Path | None,
    report_path: Path | None,
) -> None:
    """Transcribe the utterances of MANIFEST (JSONL) and print CER / WER per language as JSON.

    Text is normalised (NFKC, case, punctuation, spaces) before scoring. Languages written
    without spaces (zh, ja, th, ...) are ranked by CER and their WER counts characters; the
    others are ranked by WER ("metric" in the output).
    """
    from omnispeech.errors import OmnispeechError
    from omnispeech.eval import evaluate_asr, read_manifest
    from omnispeech.pipelines import ASR

    _check_reports(json_path, report_path)

    chosen_split = None if split == "all" else split
    codes = _languages(languages)
    try:
        read_manifest(manifest, chosen_split, codes, limit)  # fail before loading a model
        pipeline = ASR.from_pretrained(
            model, device=device, ctc_weight=ctc_weight, quantize="int8" if int8 else None
        )
        score = evaluate_asr(pipeline, manifest, chosen_split, codes, limit, not detect_language)
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
    _write(score, json_path, report_path)
    name = str(model) if model else "bundled"
    head = {"model": name, "ctc_weight": pipeline.ctc_weight, "quantized": pipeline.quantized}
    click.echo(json.dumps({**head, **score.to_dict(per_utterance=False)}, indent=2))


@eval_.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("synthesized", type=click.Path(path_type=Path))
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option(
    "--synthesize",
    is_flag=True,
    help="First say every selected utterance with --model into SYNTHESIZED (files already "
    "there are kept), cloning its speaker from another recording of that speaker.",
)
@click.option(
    "--model",
    "-m",
    default=None,
    metavar="FOLDER",
    help="With --synthesize: the TTS model (default: the bundled one).",
)
@click.option(
    "--in-context",
    is_flag=True,
    help="With --synthesize: clone in context (the reference clip's transcript too).",
)
@click.option(
    "--cross-language",
    is_flag=True,
    help="With --synthesize: clone from a clip in another language than the text when the "
    "speaker has one.",
)
@click.option(
    "--contrast",
    type=float,
    default=None,
    help="With --synthesize: the speaker contrast strength to clone with (default: the "
    "model's own; 1 = voices as the speaker encoder hears them).",
)
@click.option(
    "--guidance",
    type=float,
    default=None,
    help="With --synthesize: the classifier-free guidance scale to sample with (default: the "
    "model's own; 1 = none).",
)
@click.option(
    "--judge",
    type=click.Choice(["auto", "asr", "none"]),
    default="auto",
    show_default=True,
    help="Who transcribes: auto = PocketSphinx for English (independent), --asr-model for the "
    "rest; asr = --asr-model for every language; none = no CER / WER.",
)
@click.option(
    "--asr-model",
    metavar="FOLDER",
    default=None,
    help="Qwen3-ASR folder for the languages PocketSphinx does not judge (default: the "
    "bundled recogniser, which learnt from the bundled voices: not independent).",
)
@click.option("--no-similarity", is_flag=True, help="Skip speaker similarity (no speaker encoder).")
@_selection_options
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Sampling seed (--synthesize)."
)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda.")
@_report_options
def tts(  # noqa: PLR0913 - one parameter per CLI option
    synthesized: Path,
    manifest: Path,
    synthesize: bool,
    model: str | None,
    in_context: bool,
    cross_language: bool,
    contrast: float | None,
    guidance: float | None,
    judge: str,
    asr_model: str | None,
    no_similarity: bool,
    split: str,
    languages: tuple[str, ...],
    limit: int | None,
    seed: int,
    device: str,
    json_path: Path | None,
    report_path: Path | None,
) -> None:
    """Score synthesised audio in folder SYNTHESIZED against the references of MANIFEST and
    print the means per language as JSON.

    Each utterance's synthesised file is found by its manifest path (clips/1.wav ->
    SYNTHESIZED/clips/1.wav) or by its name (SYNTHESIZED/1.wav), as .wav, .flac or .ogg.
    Measures: intelligibility (CER / WER of a transcript of the synthesised audio, and the
    words it skipped and inserted), speaker similarity to the reference recording and to the
    other speakers' (cosine of GE2E speaker embeddings, 1 = same voice), duration ratio
    (synthesised / reference). Pointing SYNTHESIZED at the manifest's own folder scores the
    references themselves: the judge's baseline on the same sentences.

    \b
    Examples:
      omnispeech eval tts synth/ corpus/manifest.jsonl --synthesize --limit 20
      omnispeech eval tts corpus/ corpus/manifest.jsonl --languages en --no-similarity
    """
    from omnispeech.errors import InputError, OmnispeechError
    from omnispeech.eval import PocketSphinx, evaluate_tts, read_manifest
    from omnispeech.pipelines import ASR

    _check_reports(json_path, report_path)
    tuned = contrast is not None or guidance is not None
    if not synthesize and (model or in_context or cross_language or tuned):
        raise click.ClickException(
            "--model, --in-context, --cross-language, --contrast and --guidance go with "
            "--synthesize"
        )
    if judge == "none" and asr_model:
        raise click.ClickException("--asr-model has nothing to judge with --judge none")

    chosen_split = None if split == "all" else split
    codes = _languages(languages)
    try:
        entries = read_manifest(manifest, chosen_split, codes, limit)  # fail before any model
        if synthesize:
            _synthesize(
                synthesized,
                manifest,
                chosen_split,
                entries,
                model,
                in_context,
                cross_language,
                seed,
                contrast,
                guidance,
            )
        elif not synthesized.is_dir():
            raise InputError(f"synthesised audio folder not found: {synthesized}")
        judges = {"en": ("pocketsphinx", PocketSphinx())} if judge == "auto" else {}
        needs_asr = judge == "asr" or (judge == "auto" and any(e.language != "en" for e in entries))
        pipeline = ASR.from_pretrained(asr_model, device=device) if needs_asr else None
        score = evaluate_tts(
            synthesized,
            manifest,
            chosen_split,
            asr=pipeline,
            similarity=not no_similarity,
            languages=codes,
            limit=limit,
            judges=judges,
        )
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
    _write(score, json_path, report_path)
    click.echo(json.dumps(score.to_dict(per_utterance=False), indent=2, ensure_ascii=False))


def _synthesize(  # noqa: PLR0913 - the --synthesize options
    folder: Path,
    manifest: Path,
    split: str | None,
    entries: list,
    model: str | None,
    in_context: bool,
    cross_language: bool,
    seed: int,
    contrast: float | None,
    guidance: float | None,
) -> None:
    """Say every entry with the TTS model into ``folder`` (see omnispeech.eval.tts_synth)."""
    from tqdm import tqdm

    from omnispeech.eval import plan_clones, read_manifest, synthesize_plans
    from omnispeech.pipelines.tts import TTS

    # References come from every utterance of the split, not only the selected ones.
    pool = read_manifest(manifest, split)
    plans = plan_clones(entries, pool, folder, manifest.resolve().parent, cross_language)
    pipeline = TTS.from_pretrained(model)
    if contrast is not None:
        pipeline.set_speaker_contrast(contrast)
    if guidance is not None:
        pipeline.set_guidance(guidance)
    with tqdm(total=len(plans), unit="utt", desc="synthesising", leave=False) as bar:
        written = synthesize_plans(pipeline, plans, in_context, seed, bar.update)
    click.echo(f"synthesised {written} utterances into {folder}", err=True)


@eval_.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option(
    "--model",
    "-m",
    default=None,
    envvar="OMNISPEECH_ASR_MODEL",
    metavar="FOLDER",
    help="ASR folder with a CTC head (default: the bundled model).",
)
@_selection_options
def timestamps(
    manifest: Path,
    model: str | None,
    split: str,
    languages: tuple[str, ...],
    limit: int | None,
) -> None:
    """Score word timestamps against the word times espeak-ng reports while it speaks.

    Each espeak-ng utterance of MANIFEST is spoken again by the espeak-ng library with its
    voice, the model aligns the text, and the boundaries between words are compared: mean
    and median absolute error in milliseconds, per language, as JSON.

    \b
    Example:
      omnispeech eval timestamps corpus/manifest.jsonl --limit 5 --languages en,de,fr
    """
    from omnispeech.errors import OmnispeechError
    from omnispeech.eval.timestamps import evaluate_timestamps
    from omnispeech.pipelines import ASR
    from omnispeech.pipelines.espeak_speech import EspeakLibrary

    chosen_split = None if split == "all" else split
    try:
        lib = EspeakLibrary()

        def speak(text: str, voice: str):
            wav, words = lib.speak(text, voice)
            return wav, lib.sample_rate, words

        score = evaluate_timestamps(
            ASR.from_pretrained(model), speak, manifest, chosen_split, _languages(languages), limit
        )
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"model": str(model) if model else "bundled", **score.to_dict()}))
