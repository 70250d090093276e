"""``omnispeech vocode``: turn a codes file into a waveform with a Code2Wav vocoder."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from omnispeech.cli.checks import check_output_file

# Frames decoded per streaming step: bounds memory on long files and paces the progress bar.
FRAMES_PER_STEP = 125


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("codes_file", type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output audio file (.wav or .flac). A batch of B items writes OUT_0 .. OUT_{B-1}.",
)
@click.option(
    "--model",
    "-m",
    "model",
    default=None,
    envvar="OMNISPEECH_VOCODER_MODEL",
    metavar="FOLDER",
    help="Qwen3-Omni, Qwen3-TTS-Tokenizer-12Hz or omnispeech vocoder folder, "
    "or $OMNISPEECH_VOCODER_MODEL (default: the bundled codec's decoder).",
)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda.")
@click.option(
    "--tune",
    is_flag=True,
    help="First time the vocoder's tile sizes on this CPU (10-30 s at the released shapes) and "
    "keep the fastest in omnispeech's cache: every later decode on this machine, by any "
    "command, uses it. Without it the tiles come from the CPU's cache sizes.",
)
def vocode(codes_file: Path, output: Path, model: str | None, device: str, tune: bool) -> None:
    """Decode CODES_FILE (.npz with a `codes` array [K, T] or [B, K, T]) to audio.

    \b
    Examples:
      omnispeech vocode codes.npz -o speech.wav --model ./Qwen3-TTS-Tokenizer-12Hz
      omnispeech vocode talker_codes.npz -o reply.flac -m ./Qwen3-Omni-30B-A3B-Instruct
      omnispeech vocode codes.npz -o speech.wav -m ./Qwen3-TTS-Tokenizer-12Hz --tune

    \b
    The codes file (see omnispeech.codes) may also record sample_rate, frame_rate,
    codebook_size and model; when present they are checked against the vocoder, and
    codes it cannot decode are refused with a one-line error. Long files are decoded
    as a stream (bounded memory, identical output) with a progress bar.
    """
    from omnispeech.errors import OmnispeechError

    try:
        decode_codes_file(codes_file, output, model, device, tune)
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None


def decode_codes_file(
    codes_file: Path, output: Path, model: str | None, device: str, tune: bool = False
) -> None:
    """Decode a codes file to audio files (one per batch item), streaming with progress;
    with ``tune``, measure and store this CPU's tile plan first. ``model`` None: the bundled
    codec's decoder."""
    import torch
    from tqdm import tqdm

    from omnispeech.bundled import default_model
    from omnispeech.codes import load_codes
    from omnispeech.errors import InputError
    from omnispeech.vocoder import Code2Wav, check_codes

    if output.suffix.lower() not in (".wav", ".flac"):
        raise InputError(f"{output}: the output must end in .wav or .flac")
    if tune and torch.device(device).type != "cpu":
        raise InputError(f"--tune measures the CPU's tiles; it does not apply to --device {device}")
    check_output_file(output)  # a missing folder fails here, not after the decoding
    data = load_codes(codes_file)  # fail on a bad file before loading the model
    vocoder = Code2Wav.from_pretrained(model or default_model("codec"), device=device)
    cfg = vocoder.cfg
    data.check_compatible(cfg.num_quantizers, cfg.codebook_size, cfg.sample_rate, cfg.frame_rate)
    codes = torch.from_numpy(data.codes)
    lengths = torch.from_numpy(data.lengths)
    check_codes(cfg, codes, lengths, None, torch.device("cpu"))  # range errors before writing
    if int(lengths.max()) == 0:
        raise InputError(f"{codes_file}: empty code sequence: no frames to decode")
    if tune:
        _tune(vocoder)
    targets = _targets(output, codes.shape[0])
    total = int(lengths.sum())
    with tqdm(
        total=total, unit="frame", leave=False, disable=total < 500 or not sys.stderr.isatty()
    ) as bar:
        for item, target in enumerate(targets):
            n = int(lengths[item])
            with _open_audio(target, cfg.sample_rate) as sink, vocoder.streaming(1):
                for start in range(0, n, FRAMES_PER_STEP):
                    piece = codes[item : item + 1, :, start : min(n, start + FRAMES_PER_STEP)]
                    sink.write(vocoder.push(piece).wav[0, 0].cpu().numpy())
                    bar.update(piece.shape[-1])
                sink.write(vocoder.flush().wav[0, 0].cpu().numpy())
            click.echo(f"{target}\t{cfg.num_samples(n) / cfg.sample_rate:.2f} s", err=True)


def _tune(vocoder) -> None:  # noqa: ANN001 - a Code2Wav, imported lazily
    """Time the candidate tile plans with a progress bar, store the fastest, say which."""
    from tqdm import tqdm

    from omnispeech.vocoder.tiles import COARSE_CANDIDATES, FINE_CANDIDATES, plan_file

    plans = len(FINE_CANDIDATES) + len(COARSE_CANDIDATES)  # what tune_tiles times, in turn
    with tqdm(total=plans, unit="plan", desc="timing tiles", leave=False) as bar:
        plan = vocoder.tune_tiles(store=True, progress=lambda *_: bar.update())
    click.echo(
        f"tiles: coarse {plan.coarse_frames} frames, fine {plan.fine_samples} samples "
        f"(measured; kept in {plan_file()})",
        err=True,
    )


def _open_audio(path: Path, rate: int):
    """A mono sound file open for writing; a file that cannot be created is one error line."""
    import soundfile as sf

    from omnispeech.errors import AudioFileError

    try:
        return sf.SoundFile(path, "w", rate, 1)
    except (sf.SoundFileError, OSError) as exc:
        raise AudioFileError(f"{path}: cannot write audio ({exc})") from None


def _targets(output: Path, batch: int) -> list[Path]:
    if batch == 1:
        return [output]
    return [output.with_name(f"{output.stem}_{i}{output.suffix}") for i in range(batch)]
