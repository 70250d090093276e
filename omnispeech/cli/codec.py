"""``omnispeech codec``: audio <-> codes files with a Qwen3-TTS-Tokenizer-12Hz folder."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from omnispeech.cli.checks import check_output_file
from omnispeech.cli.vocode import decode_codes_file

# The codec folder, for every command that reads one (codec encode/decode, eval codec).
codec_model_option = click.option(
    "--model",
    "-m",
    default=None,
    envvar="OMNISPEECH_CODEC_MODEL",
    metavar="FOLDER",
    help="Codec folder: Qwen3-TTS-Tokenizer-12Hz, or one exported by 'train codec' "
    "($OMNISPEECH_CODEC_MODEL; default: the bundled codec).",
)
# Files from this many seconds on show a progress bar (shorter ones encode in a moment).
LONG_SECONDS = 30.0


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def codec() -> None:
    """Encode audio to codec codes and decode them back (24 kHz audio).

    Without --model the codec that ships inside the package is used (25 frames/s, 8
    codebooks of 1024; see docs/codec-small.md); Qwen3-TTS-Tokenizer-12Hz is 12.5 frames/s
    with 16 codebooks. A codes file records which codec made it.

    \b
    Examples:
      omnispeech codec encode voice.wav -o voice.npz
      omnispeech codec decode voice.npz -o copy.wav
      omnispeech codec encode voice.wav -o voice.npz --model ./Qwen3-TTS-Tokenizer-12Hz
      omnispeech codec decode voice.npz -o copy.wav --model ./Qwen3-TTS-Tokenizer-12Hz
    """


@codec.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("audio", type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Codes file to write (.npz; format in omnispeech.codes).",
)
@codec_model_option
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda.")
def encode(audio: Path, output: Path, model: str | None, device: str) -> None:
    """Encode AUDIO (any format soundfile reads, any rate, mono or not) to a codes file.

    The file records the codes [16, T] and the codec's sample rate, frame rate, codebook size
    and name, so that `omnispeech codec decode` can check them. Long files are read block by
    block and encoded as a stream (bounded memory, the same codes), with a progress bar.
    Digital silence and clipped audio are encoded with a one-line warning.
    """
    import warnings

    from tqdm import tqdm

    from omnispeech.audio import audio_duration
    from omnispeech.errors import AudioWarning, OmnispeechError
    from omnispeech.pipelines import Codec

    try:
        if output.suffix.lower() != ".npz":
            raise click.ClickException(f"{output}: a codes file must end in .npz")
        check_output_file(output)
        seconds = audio_duration(audio)  # fail on a bad file before loading the model
        model_ = Codec.from_pretrained(model, device=device)  # None: the bundled codec
        with (
            warnings.catch_warnings(record=True) as caught,
            tqdm(
                total=round(seconds, 1),
                unit="s",
                desc=audio.name,
                leave=False,
                disable=seconds < LONG_SECONDS or not sys.stderr.isatty(),
            ) as bar,
        ):
            warnings.simplefilter("always", AudioWarning)
            codes = model_.encode_file(audio, progress=lambda done: bar.update(round(done, 1)))
        model_.save_codes(output, codes)
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in caught:
        if issubclass(warning.category, AudioWarning):
            click.echo(f"Warning: {warning.message}", err=True)
    click.echo(f"{output}\t{codes.shape[-1]} frames x {codes.shape[0]} codebooks", err=True)


@codec.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("codes_file", type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Audio file to write (.wav or .flac).",
)
@codec_model_option
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda.")
def decode(codes_file: Path, output: Path, model: str | None, device: str) -> None:
    """Decode CODES_FILE back to audio (the same as `omnispeech vocode`)."""
    from omnispeech.errors import OmnispeechError

    try:
        decode_codes_file(codes_file, output, model, device)
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
