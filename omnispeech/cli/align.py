"""``omnispeech align``: word and token boundaries of a known transcript (forced alignment)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("audio", type=click.Path(path_type=Path))
@click.argument("text")
@click.option(
    "--model",
    "-m",
    default=None,
    envvar="OMNISPEECH_ASR_MODEL",
    metavar="FOLDER",
    help="An ASR folder with a CTC head (one trained by `omnispeech train asr`), or "
    "$OMNISPEECH_ASR_MODEL. Default: the bundled model.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "tsv"]),
    default="json",
    show_default=True,
    help="json: {words: [...], tokens: [...]}; tsv: one word per line (start, end, word).",
)
@click.option("--tokens", is_flag=True, help="With --format tsv: one token per line instead.")
def align(audio: Path, text: str, model: str | None, fmt: str, tokens: bool) -> None:
    """Place each word of TEXT (what AUDIO says) in time, in seconds.

    TEXT may be given as `-` to read it from standard input. A transcript that does not match
    the audio is refused with one line, rather than aligned to nonsense.

    \b
    Examples:
      omnispeech align talk.wav "Hello and welcome to the show."
      omnispeech align talk.wav - --format tsv < talk.txt
    """
    import sys

    from omnispeech.errors import OmnispeechError
    from omnispeech.pipelines import ASR

    if text == "-":
        text = sys.stdin.read()
    try:
        result = ASR.from_pretrained(model).align(audio, text)
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        record = {
            "path": str(audio),
            "words": [w.to_dict() for w in result.words],
            "tokens": [t.to_dict() for t in result.tokens if t.text],
            "mismatch": round(result.gap, 3),
        }
        click.echo(json.dumps(record, ensure_ascii=False))
        return
    for span in result.tokens if tokens else result.words:
        if span.text:
            click.echo(f"{span.start:.3f}\t{span.end:.3f}\t{span.text}")
