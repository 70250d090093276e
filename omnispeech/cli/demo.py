"""``omnispeech demo``: the Gradio voice-cloning and transcription page (extra ``demo``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click


def model_options(command: Callable) -> Callable:
    """The model options shared by ``demo`` and ``serve``."""
    options = [
        click.option(
            "--tts-model",
            metavar="FOLDER",
            help="Qwen3-TTS folder [default: $OMNISPEECH_TTS_MODEL, then the bundled model].",
        ),
        click.option(
            "--asr-model",
            metavar="FOLDER",
            help="Qwen3-ASR folder [default: $OMNISPEECH_ASR_MODEL, then the bundled model].",
        ),
        click.option("--device", default="cpu", show_default=True, help="torch device."),
        click.option(
            "--int8", is_flag=True, help="int8 weight-only talker (1.7x-3.5x faster on CPU)."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(0, 65535))
@click.option("--share", is_flag=True, help="Also open a public Gradio link (off by default).")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 16),
    help="Requests processed at once; others wait in the queue.",
)
@click.option("--max-queue", default=32, show_default=True, type=click.IntRange(1))
@click.option("--max-file-mb", default=10.0, show_default=True, type=click.FloatRange(min=0.01))
@click.option("--max-chars", default=1000, show_default=True, type=click.IntRange(1))
@click.option(
    "--max-speech-seconds",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Most speech generated per request.",
)
@click.option(
    "--voices-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of saved voices [default: ~/.cache/omnispeech/voices].",
)
def demo(  # noqa: PLR0913 - one parameter per option
    tts_model: str | None,
    asr_model: str | None,
    device: str,
    int8: bool,
    host: str,
    port: int,
    share: bool,
    workers: int,
    max_queue: int,
    max_file_mb: float,
    max_chars: int,
    max_speech_seconds: float,
    voices_dir: Path | None,
) -> None:
    """Open the voice-cloning demo in the browser: record or upload a clip, type text, listen
    as it is spoken; save voices; transcribe files or the microphone live.

    \b
    Examples:
      omnispeech demo --tts-model ./Qwen3-TTS-12Hz-0.6B-Base --asr-model ./Qwen3-ASR-0.6B
      omnispeech demo --port 8080 --workers 2
    """
    from omnispeech.apps.demo import DemoConfig, build_demo, launch
    from omnispeech.apps.models import load_models, require_extra
    from omnispeech.errors import OmnispeechError

    try:
        require_extra("gradio", "demo")
        models, notes = load_models(tts_model, asr_model, device, int8)
        config = DemoConfig(
            workers=workers,
            max_queue=max_queue,
            max_file_bytes=int(max_file_mb * 1e6),
            max_chars=max_chars,
            max_speech_seconds=max_speech_seconds,
            **({"voices_dir": voices_dir} if voices_dir is not None else {}),
        )
        page = build_demo(models, config)
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
    for note in notes:
        click.echo(f"Note: {note}", err=True)
    click.echo(f"Demo with {models.describe()} at http://{host}:{port}", err=True)
    launch(page, config, host=host, port=port, share=share)
