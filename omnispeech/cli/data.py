"""``omnispeech data build|languages|stats|voices``: a synthetic multilingual speech corpus."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import click


def _one_line_warnings() -> None:
    # A missing engine is one line on stderr, not a Python source location.
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"


def _parse_rates(value: str) -> tuple[int, ...]:
    try:
        rates = tuple(int(r) for r in value.split(",") if r.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give rates in Hz, e.g. 16000,24000") from None
    if not rates or any(r <= 0 for r in rates):
        raise click.BadParameter(f"{value!r}: give positive rates in Hz, e.g. 16000,24000")
    return rates


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def data() -> None:
    """Build a synthetic multilingual multi-speaker speech corpus from offline TTS engines.

    \b
    Examples:
      omnispeech data languages
      omnispeech data build --hours 1 --languages en,de,fr --out corpus --seed 0
      omnispeech data build --hours 12 --languages all --out corpus --workers 2 --min-sentences 200
      omnispeech data stats corpus
      omnispeech data voices corpus --factors 0.86,0.93,1.07,1.16
    """


@data.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--hours",
    type=click.FloatRange(min=0, min_open=True),
    required=True,
    help="Audio to aim for, spread evenly over the languages.",
)
@click.option(
    "--languages",
    default="all",
    show_default=True,
    help="Comma-separated ISO 639 codes (en,de,...), or all.",
)
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Corpus folder; an existing one is resumed.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the whole plan.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Synthesis processes.",
)
@click.option(
    "--redistributable",
    is_flag=True,
    help="Keep only voices and texts whose licences allow shipping a trained model.",
)
@click.option(
    "--sample-rates",
    default="16000,24000",
    show_default=True,
    help="Output rates in Hz; the manifest's path is at the first.",
)
@click.option(
    "--min-sentences",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="At least this many distinct sentences per language, where it has them.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build(  # noqa: PLR0913 - one option each
    hours: float,
    languages: str,
    out: Path,
    seed: int,
    workers: int,
    redistributable: bool,
    sample_rates: str,
    min_sentences: int,
    quiet: bool,
) -> None:
    """Synthesise the corpus into OUT (wav16000/, wav24000/, manifest.jsonl)."""
    from omnispeech.data import BuildConfig, build_corpus
    from omnispeech.errors import OmnispeechError

    _one_line_warnings()
    codes = None if languages.strip() == "all" else tuple(c.strip() for c in languages.split(","))
    start = time.perf_counter()
    try:
        config = BuildConfig(
            out=out,
            hours=hours,
            languages=codes,
            seed=seed,
            workers=workers,
            redistributable=redistributable,
            sample_rates=_parse_rates(sample_rates),
            min_sentences=min_sentences,
        )
        result = build_corpus(config, progress=not quiet)
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(result.dropped.items())) or "none"
    click.echo(
        f"{result.kept} utterances, {result.seconds / 3600:.2f} h, {result.synthesised} "
        f"synthesised now, dropped: {dropped}; {time.perf_counter() - start:.0f} s; "
        f"manifest: {result.manifest}"
    )


@data.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redistributable", is_flag=True, help="Count only redistributable sources.")
def languages(redistributable: bool) -> None:
    """Print a table: language -> sentences, engines and voices on this machine."""
    from omnispeech.data import language_table

    _one_line_warnings()
    click.echo(language_table(redistributable=redistributable), nl=False)


@data.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("corpus", type=click.Path(exists=True, path_type=Path))
def stats(corpus: Path) -> None:
    """Print a markdown table of a built corpus (folder or manifest.jsonl)."""
    from omnispeech.data import corpus_stats
    from omnispeech.errors import OmnispeechError

    try:
        click.echo(corpus_stats(corpus), nl=False)
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None


def _parse_factors(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(f) for f in value.split(",") if f.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give speed factors, e.g. 0.9,1.1") from None


@data.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("corpus", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--factors",
    default="0.86,0.93,1.07,1.16",
    show_default=True,
    help="Speed factors, comma-separated: each makes new voices (1.1 = 10 % faster and higher).",
)
@click.option(
    "--out",
    "-o",
    default="manifest.voices.jsonl",
    show_default=True,
    help="File name of the new manifest, written in the corpus folder.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Draws each copy's factor.")
@click.option("--split", default="train", show_default=True, help="The split to copy.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
def voices(corpus: Path, factors: str, out: str, seed: int, split: str, workers: int) -> None:
    """Add voices to CORPUS: each training utterance again, resampled faster or slower.

    Resampling moves pitch, formants and tempo together, as another speaker's vocal tract
    would, so each copy counts as a new speaker ("{speaker}-s107" for 1.07). Held-out splits
    stay as they are. The corpus's manifest.jsonl is kept; train on the new manifest:

    \b
      omnispeech data voices corpus --workers 2
      omnispeech train tts -c recipes/tts/aria25.json --train corpus/manifest.voices.jsonl ...
    """
    from omnispeech.data.voices import perturb_voices
    from omnispeech.errors import OmnispeechError

    start = time.perf_counter()
    try:
        result = perturb_voices(corpus, _parse_factors(factors), out, seed, split, workers)
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{result.copies} copies ({result.written} written now, {result.seconds / 3600:.2f} h), "
        f"{split} speakers {result.speakers[0]} -> {result.speakers[1]}; "
        f"{time.perf_counter() - start:.0f} s; manifest: {result.manifest}"
    )
