"""``omnispeech serve``: the OpenAI-compatible speech server (extra ``server``)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from omnispeech.cli.demo import model_options


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--api-key",
    envvar="OMNISPEECH_API_KEY",
    help="Require 'Authorization: Bearer KEY' on every route ($OMNISPEECH_API_KEY).",
)
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Requests processed at once (model replicas sharing one copy of the weights).",
)
@click.option(
    "--max-queue",
    default=64,
    show_default=True,
    type=click.IntRange(0),
    help="Requests that may wait for a worker; more are answered 503.",
)
@click.option("--max-body-mb", default=25.0, show_default=True, type=click.FloatRange(min=0.001))
@click.option(
    "--max-audio-seconds",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="Longest audio to transcribe (upload or live stream).",
)
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
def serve(  # noqa: PLR0913 - one parameter per option
    tts_model: str | None,
    asr_model: str | None,
    device: str,
    int8: bool,
    host: str,
    port: int,
    api_key: str | None,
    workers: int,
    max_queue: int,
    max_body_mb: float,
    max_audio_seconds: float,
    max_speech_seconds: float,
    voices_dir: Path | None,
) -> None:
    """Serve the OpenAI audio API: /v1/audio/speech, /v1/audio/transcriptions,
    /v1/audio/voices and the live-transcription WebSocket /v1/realtime.

    \b
    Examples:
      omnispeech serve --tts-model ./Qwen3-TTS-12Hz-0.6B-Base --asr-model ./Qwen3-ASR-0.6B
      OMNISPEECH_API_KEY=secret omnispeech serve --host 0.0.0.0 --port 8000
    """
    from omnispeech.apps.models import load_models, require_extra
    from omnispeech.apps.server import ServerConfig, create_app
    from omnispeech.apps.server import serve as run
    from omnispeech.errors import OmnispeechError

    try:
        for module in ("fastapi", "uvicorn", "multipart"):
            require_extra(module, "server")
        models, notes = load_models(tts_model, asr_model, device, int8)
        _share_cores(workers)
        config = ServerConfig(
            workers=workers,
            max_queue=max_queue,
            max_body_bytes=int(max_body_mb * 1e6),
            max_upload_seconds=max_audio_seconds,
            max_speech_seconds=max_speech_seconds,
            api_key=api_key or None,
            **({"voices_dir": voices_dir} if voices_dir is not None else {}),
        )
        app = create_app(models, config)
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
    for note in notes:
        click.echo(f"Note: {note}", err=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not config.api_key:
        click.echo(
            f"Warning: listening on {host} without --api-key: anyone who can reach it can use it",
            err=True,
        )
    key = "an API key" if config.api_key else "no API key"
    click.echo(f"Serving {models.describe()} at http://{host}:{port}/v1 ({key})", err=True)
    run(app, host=host, port=port)


def _share_cores(workers: int) -> None:
    """Give each worker its share of the cores, so parallel requests do not oversubscribe."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
