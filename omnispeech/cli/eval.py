"""``omnispeech eval``: measure models on held-out audio."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def eval_() -> None:
    """Measure the quality of omnispeech models on your own held-out audio.

    \b
    Examples:
      omnispeech eval codec held_out/ --model ./Qwen3-TTS-Tokenizer-12Hz
      omnispeech eval codec a.wav b.flac -m runs/codec/model --per-file
    """


@eval_.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "-m",
    required=True,
    envvar="OMNISPEECH_CODEC_MODEL",
    metavar="FOLDER",
    help="Codec folder (Qwen3-TTS-Tokenizer-12Hz layout, or one exported by 'train codec').",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Evaluate at most this much of each file.",
)
@click.option("--per-file", is_flag=True, help="Also print the distance of every file.")
def codec(inputs: tuple[Path, ...], model: str, max_seconds: float, per_file: bool) -> None:
    """Reconstruct INPUTS (files, or folders of .wav/.flac/.ogg) through a codec and print the
    multi-scale log-mel distance as JSON (0 = a perfect copy; lower is better).

    The control `mel_distance_shuffled_codes` decodes the codes with their frames shuffled: it
    should be clearly worse; if it is not, the codes carry nothing (a collapsed codec).
    """
    from omnispeech.errors import OmnispeechError
    from omnispeech.eval import evaluate_codec
    from omnispeech.pipelines import Codec

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
        "model": str(model),
        "files": len(files),
        "seconds": round(score.seconds, 2),
        "mel_distance": score.mean,
        "mel_distance_shuffled_codes": score.shuffled,
    }
    if per_file:
        report["per_file"] = score.per_file
    click.echo(json.dumps(report, indent=2))
