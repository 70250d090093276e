"""``omnispeech chat``: one turn with Qwen3-Omni, text or audio in, text and speech out."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from omnispeech.cli.checks import check_input_file, check_output_file, check_seed

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("text", required=False)
@click.option(
    "--model",
    "-m",
    required=True,
    envvar="OMNISPEECH_OMNI_MODEL",
    metavar="FOLDER",
    help="Qwen3-Omni folder, e.g. Qwen3-Omni-30B-A3B-Instruct ($OMNISPEECH_OMNI_MODEL).",
)
@click.option(
    "--audio",
    "audio_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="A recording to answer (with TEXT as an instruction about it, or alone).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Write the spoken reply (.wav, .flac, .ogg); '-' streams raw 16-bit 24 kHz mono PCM "
    "to standard output (the text then goes to standard error). Without it: text only.",
)
@click.option(
    "--speaker", metavar="NAME", help="A built-in voice (released: ethan, chelsie, aiden)."
)
@click.option("--max-new-tokens", default=1024, show_default=True, help="Longest text reply.")
@click.option(
    "--max-seconds",
    default=327.68,
    show_default=True,
    help="Longest spoken reply (the released limit: 4096 frames of 80 ms).",
)
@click.option("--seed", type=int, help="Sampling seed (printed when omitted).")
@click.option("--greedy", is_flag=True, help="Arg-max speech instead of the released sampling.")
@click.option("--device", default="cpu", show_default=True, help="Where the models run.")
def chat(  # noqa: PLR0913 - one argument per option
    text: str | None,
    model: str,
    audio_file: Path | None,
    output: Path | None,
    speaker: str | None,
    max_new_tokens: int,
    max_seconds: float,
    seed: int | None,
    greedy: bool,
    device: str,
) -> None:
    """Answer TEXT (or the --audio recording) with Qwen3-Omni: the reply is printed as it is
    written, and spoken into --output while the Thinker still writes.

    \b
    Examples:
      omnispeech chat "Tell me a short joke." -m ./Qwen3-Omni-30B-A3B-Instruct -o joke.wav
      omnispeech chat --audio question.wav -m M -o - | aplay -f S16_LE -r 24000 -c 1
      omnispeech chat "What language is this?" --audio clip.flac -m M
    """
    import secrets

    from omnispeech.errors import OmnispeechError

    if not (text and text.strip()) and audio_file is None:
        raise click.ClickException("nothing to answer: give TEXT or --audio FILE")
    if audio_file is not None:
        check_input_file(audio_file, "--audio")
    check_seed(seed)
    if max_new_tokens < 1:
        raise click.ClickException(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    if not max_seconds > 0:
        raise click.ClickException(f"--max-seconds must be > 0, got {max_seconds:g}")
    max_frames = max(1, round(max_seconds * 12.5))  # 12.5 codec frames per second
    if output is not None:
        if str(output) != "-" and output.suffix.lower() not in AUDIO_SUFFIXES:
            raise click.ClickException(f"{output}: write .wav, .flac or .ogg (or '-' for raw PCM)")
        check_output_file(output)
    seed = secrets.randbits(63) if seed is None else seed
    text_out = sys.stderr if output is not None and str(output) == "-" else sys.stdout
    try:
        _chat(text, model, audio_file, output, speaker, (max_new_tokens, max_frames), seed,
              greedy, device, text_out)  # fmt: skip
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None


def _chat(  # noqa: PLR0913 - the command's options, checked
    text, model, audio_file, output, speaker, limits, seed, greedy, device, text_out
) -> None:
    import contextlib

    import torch

    from omnispeech.audio import load_audio
    from omnispeech.bridge import Omni, SpeechChunk
    from omnispeech.cli.tts import _Sink
    from omnispeech.talker import GenerationConfig

    wav = None if audio_file is None else load_audio(audio_file, 16000)
    start = time.perf_counter()
    omni = Omni.from_pretrained(model, device=device, speech=output is not None)
    speech = output is not None and omni.speaks
    if output is not None and not omni.speaks:
        click.echo("Note: this model has no talker: the reply is text only", err=True)
    if speech and greedy:
        omni.voice.generation = GenerationConfig.qwen3_omni({"talker_do_sample": False})
    if speaker is not None and speech:
        omni.voice.speaker_id(speaker)  # an unknown name fails before anything runs
    events = omni.chat(
        text,
        None if wav is None else torch.from_numpy(wav),
        speaker=speaker,
        max_new_tokens=limits[0],
        max_frames=limits[1],
        seed=seed,
        speech=speech,
    )
    ids: list[int] = []
    shown = ""
    first = None
    rate = omni.voice.sample_rate if speech else 24000
    sink = _Sink(output, rate, stream=True) if speech else None
    with sink if sink is not None else contextlib.nullcontext():
        for event in events:
            if isinstance(event, SpeechChunk):
                if first is None:
                    first = time.perf_counter() - start
                sink.write(event.samples)
                continue
            if event.id == omni.ids.im_end:
                continue
            ids.append(event.id)
            shown = _show(omni, ids, shown, text_out)
    text_out.write("\n")
    text_out.flush()
    if speech:
        took = time.perf_counter() - start
        heard = "" if first is None else f", first audio after {first:.2f} s"
        click.echo(
            f"{output}\t{sink.samples / rate:.2f} s of speech, seed {seed}{heard}, "
            f"{took:.1f} s in all",
            err=True,
        )


def _show(omni, ids: list[int], shown: str, out) -> str:
    """Print what the newest token adds to the reply (ids when there is no tokenizer)."""
    if omni.tokenizer is None:
        out.write(("" if len(ids) == 1 else " ") + str(ids[-1]))
        out.flush()
        return shown
    now = omni.tokenizer.decode(ids)
    if now.endswith("\ufffd") or not now.startswith(shown):
        return shown  # inside a multi-byte character: wait for the next token
    out.write(now[len(shown) :])
    out.flush()
    return now
