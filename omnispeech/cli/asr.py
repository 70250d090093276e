"""``omnispeech asr``: transcribe audio files with the bundled model or a Qwen3-ASR checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "-m",
    "model",
    default=None,
    envvar="OMNISPEECH_ASR_MODEL",
    metavar="FOLDER",
    help="Qwen3-ASR checkpoint folder (original or -hf layout), or $OMNISPEECH_ASR_MODEL. "
    "Default: the bundled model.",
)
@click.option(
    "--language",
    "-l",
    default=None,
    metavar="LANG",
    help="Force the language (code or name: en, English, zh ...). Default: detect.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["txt", "json"]),
    default="txt",
    show_default=True,
    help="txt: the transcript; json: one JSON object per file (path, language, text, seconds, "
    "and words with --timestamps).",
)
@click.option(
    "--timestamps",
    is_flag=True,
    help="Add each word's start and end (seconds) to the JSON output (implies --format json); "
    "needs a model with a CTC head, like the bundled one.",
)
@click.option("--context", default="", help="Text for the system turn: names, jargon, topic.")
@click.option(
    "--segment-seconds",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=2.0),
    help="Long files are cut at quiet points into segments at most this long.",
)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda.")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default="float32",
    show_default=True,
    help="Weight precision; bfloat16 halves memory (best on GPU).",
)
@click.option(
    "--int8",
    "int8",
    is_flag=True,
    help="Store the text decoder's weights as int8 (a quarter of the float32 bytes read per "
    "token; it computes in bfloat16 instead of float32).",
)
@click.option(
    "--ctc-weight",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    metavar="W",
    help="Share of the CTC head in each decoding choice, 0-1 (joint CTC/attention decoding; "
    "0: the decoder alone). Default: the model's own (the bundled model's 0.5); models "
    "without a CTC head take only 0.",
)
def asr(  # noqa: PLR0913 - one parameter per CLI option
    files: tuple[Path, ...],
    model: str | None,
    language: str | None,
    fmt: str,
    timestamps: bool,
    context: str,
    segment_seconds: float,
    device: str,
    dtype: str,
    int8: bool,
    ctc_weight: float | None,
) -> None:
    """Transcribe FILES (wav, flac or ogg; any sample rate, mono or multi-channel).

    \b
    Examples:
      omnispeech asr talk.wav                         # the bundled model, language detected
      omnispeech asr talk.wav --language sw --timestamps
      omnispeech asr talk.wav --model ./Qwen3-ASR-0.6B
      omnispeech asr *.flac -m ./Qwen3-ASR-1.7B --language de --format json > out.jsonl
      omnispeech asr lecture.ogg -m ./Qwen3-ASR-0.6B --context "Fourier, Nyquist"
      omnispeech asr talk.wav -m ./Qwen3-ASR-0.6B --int8    # faster decoding on CPU

    Long recordings are read block by block and shown with a progress bar. A file that
    cannot be transcribed is reported on one line; the others still run, and the exit
    status is 1 if any failed.
    """
    import torch
    from tqdm import tqdm

    from omnispeech.audio import audio_duration
    from omnispeech.errors import OmnispeechError
    from omnispeech.pipelines import ASR
    from omnispeech.pipelines.asr_prompt import resolve_language
    from omnispeech.pipelines.languages import LANGUAGE_NAMES

    try:
        # Fail on an unknown language before loading a large model; the model's own list
        # is checked after loading.
        resolve_language(language, list(LANGUAGE_NAMES.values()))
        pipeline = ASR.from_pretrained(
            model,
            dtype=getattr(torch, dtype),
            device=device,
            quantize="int8" if int8 else None,
            ctc_weight=ctc_weight,
        )
        resolve_language(language, list(pipeline.config.languages) or None)
        if timestamps:
            pipeline.require_ctc()
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
    if timestamps:
        fmt = "json"
    failed = 0
    for path in files:
        try:
            seconds = audio_duration(path)
            with tqdm(
                total=round(seconds, 1),
                unit="s",
                desc=path.name,
                leave=False,
                disable=seconds < 30 or not sys.stderr.isatty(),
            ) as bar:
                result = pipeline.transcribe_file(
                    path,
                    language=language,
                    context=context,
                    segment_seconds=segment_seconds,
                    progress=lambda done, bar=bar: bar.update(round(done, 1)),
                    timestamps=timestamps,
                )
        except OmnispeechError as exc:
            failed += 1
            click.echo(f"Error: {exc}", err=True)
            continue
        if fmt == "json":
            record = {
                "path": str(path),
                "language": result.language,
                "text": result.text,
                "seconds": round(seconds, 3),
            }
            if timestamps:
                record["words"] = [w.to_dict() for w in result.words]
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            click.echo(f"{path}\t{result.text}" if len(files) > 1 else result.text)
    if failed:
        sys.exit(1)
