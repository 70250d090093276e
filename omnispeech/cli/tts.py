"""``omnispeech tts``: text to speech with voice cloning, offline or streamed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from omnispeech.cli.checks import check_output_file, check_seed, check_speed

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def _stdin_pieces(lines: bool):
    """Standard input, a line at a time (``--stream``: text is spoken as it arrives)."""
    if lines:
        yield from iter(sys.stdin.readline, "")
    else:
        yield sys.stdin.read()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("text")
@click.option(
    "--model",
    "-m",
    default=None,
    envvar="OMNISPEECH_TTS_MODEL",
    metavar="FOLDER",
    help="Qwen3-TTS model folder, e.g. Qwen3-TTS-12Hz-0.6B-Base ($OMNISPEECH_TTS_MODEL; "
    "default: the bundled voice-cloning model).",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Audio file to write (.wav, .flac, .ogg); '-' writes raw 16-bit 24 kHz mono PCM to "
    "standard output (pipe it into a player).",
)
@click.option(
    "--clone",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="REF",
    help="Reference clip whose voice to clone (1-30 s; 3-15 s of clean speech works best).",
)
@click.option(
    "--ref-text",
    metavar="TEXT",
    help="Transcript of the --clone clip: enables in-context cloning (closest imitation); "
    "'auto' lets the bundled recogniser write it. Without it only the speaker vector is used.",
)
@click.option("--speaker", metavar="NAME", help="A built-in speaker (CustomVoice models).")
@click.option(
    "--voice",
    "voice_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A voice saved with --save-voice (instead of --clone).",
)
@click.option(
    "--save-voice",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also save the --clone voice to this file, to reuse it without the clip.",
)
@click.option(
    "--language",
    "-l",
    default="auto",
    show_default=True,
    help="Language of the text: a name (english, chinese, german, ...), an ISO code (en, zh, "
    "de, ...) or auto.",
)
@click.option(
    "--instruct",
    metavar="TEXT",
    help="Style or voice description (1.7B CustomVoice / VoiceDesign models), e.g. "
    "'a calm, low male voice'.",
)
@click.option("--seed", type=int, help="Sampling seed: the same seed gives the same audio.")
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="Text feed speed (< 1 slower); 1 is how the released models were trained.",
)
@click.option(
    "--stream/--no-stream",
    default=False,
    help="Write audio as it is generated (the first packet after the first frame) and read "
    "TEXT '-' line by line as it arrives.",
)
@click.option(
    "--arrangement",
    type=click.Choice(["stream", "full"]),
    help="stream: text enters one token per frame; full: all text in the prompt first "
    "(default as released: full for --speaker, stream for --clone).",
)
@click.option(
    "--contrast",
    type=float,
    default=None,
    help="With --clone: push the voice this many times as far from the model's training voices' "
    "centre (more distinct voices above 1; 1 = as the speaker encoder hears it). Default: the "
    "model folder's own setting (2 for the bundled model).",
)
@click.option(
    "--guidance",
    type=float,
    default=None,
    help="Classifier-free guidance scale: above 1 follows the text and the voice more closely, "
    "at two talker passes per frame (1 = none). Single-stream models trained for it only. "
    "Default: the model folder's own setting.",
)
@click.option("--greedy", is_flag=True, help="No sampling: always the most likely codes.")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default="float32",
    show_default=True,
    help="Talker precision; 16-bit halves the memory read per frame.",
)
@click.option(
    "--int8",
    "int8",
    is_flag=True,
    help="Store the talker's per-frame weights as int8 (per frame on CPU 1.7x to 3.5x faster "
    "than float32, depending on the processor).",
)
@click.option(
    "--int4",
    "int4",
    is_flag=True,
    help="Store the talker's and code predictor's per-frame weights in 4 bits (groups of 64 "
    "columns): half the bytes of --int8 (3.3x faster per frame than float32 on a 2-core "
    "Xeon), "
    "a larger rounding error.",
)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda.")
def tts(  # noqa: PLR0913 - one argument per option
    text: str,
    model: str | None,
    output: Path,
    clone: Path | None,
    ref_text: str | None,
    speaker: str | None,
    voice_file: Path | None,
    save_voice: Path | None,
    language: str,
    instruct: str | None,
    seed: int | None,
    speed: float,
    stream: bool,
    arrangement: str | None,
    contrast: float | None,
    guidance: float | None,
    greedy: bool,
    dtype: str,
    int8: bool,
    int4: bool,
    device: str,
) -> None:
    """Speak TEXT ('-' reads standard input) and write it to --output.

    Long text is split into utterances at sentence ends, never truncated. The seed used is
    printed, so a good take can be reproduced.

    \b
    Examples:
      omnispeech tts "Hello, this is my voice." --clone examples/austen.wav -o hello.wav
      omnispeech tts "Hello there." --clone me.wav -o hello.wav -m ./Qwen3-TTS-12Hz-0.6B-Base
      omnispeech tts "Hello." --clone me.wav --ref-text "What I say in me.wav" -o out.wav -m M
      omnispeech tts "Hello." --clone examples/austen.wav --ref-text auto -o out.wav
      omnispeech tts - --stream --clone me.wav -o - -m M < story.txt | aplay -f S16_LE -r 24000 -c 1
      omnispeech tts "Bonjour." --speaker vivian --language french -o b.wav -m ./CustomVoice
    """
    import warnings

    import torch
    from tqdm import tqdm

    from omnispeech.audio import audio_duration
    from omnispeech.errors import OmnispeechError
    from omnispeech.pipelines.tts import TTS
    from omnispeech.pipelines.tts_loop import GenerationWarning
    from omnispeech.pipelines.tts_prompt import VoicePrompt
    from omnispeech.talker import MAX_GUIDANCE, GenerationConfig

    # Everything that can be checked without the model is checked before it loads: one
    # line and exit status 1 each, as for every other bad input.
    if not text.strip():
        raise click.ClickException("TEXT is empty: nothing to say")
    if ref_text is not None and clone is None:
        raise click.ClickException("--ref-text needs --clone (the clip it transcribes)")
    if sum(x is not None for x in (clone, speaker, voice_file)) > 1:
        raise click.ClickException("give one of --clone, --speaker and --voice")
    if save_voice is not None and clone is None:
        raise click.ClickException("--save-voice needs --clone (the clip to make the voice from)")
    if int8 and int4:
        raise click.ClickException("give one of --int8 and --int4")
    if contrast is not None:
        if clone is None:
            raise click.ClickException("--contrast needs --clone (the voice it pushes)")
        check_speed(contrast, "--contrast")
    if guidance is not None and not 1 <= guidance <= MAX_GUIDANCE:
        raise click.ClickException(
            f"--guidance must lie between 1 (none) and {MAX_GUIDANCE:g}, got {guidance:g}"
        )
    check_seed(seed)
    check_speed(speed)
    if str(output) != "-" and output.suffix.lower() not in AUDIO_SUFFIXES:
        raise click.ClickException(f"{output}: write .wav, .flac or .ogg (or '-' for raw PCM)")
    check_output_file(output)
    if save_voice is not None:
        check_output_file(save_voice, "--save-voice")
    try:
        voice = None
        if voice_file is not None:
            voice = VoicePrompt.load(voice_file)
        if clone is not None:
            audio_duration(clone)  # a missing or unreadable clip fails before the model loads
        start = time.perf_counter()
        quantize = "int8" if int8 else "int4" if int4 else None
        model_ = TTS.from_pretrained(
            model, dtype=getattr(torch, dtype), device=device, quantize=quantize
        )
        if text != "-":  # text the model cannot read fails before the reference is encoded
            model_.frontend.check_text(text, language)
        if contrast is not None:
            model_.set_speaker_contrast(contrast)
        if guidance is not None:
            model_.set_guidance(guidance)
        if clone is not None or speaker is not None:
            ref_language = language
            if ref_text is not None and ref_text.strip().lower() == "auto":
                ref_text, ref_language = _transcribe(clone, language)
            voice = model_.voice(clone, ref_text=ref_text, speaker=speaker, language=ref_language)
        if save_voice is not None:
            voice.save(save_voice)
        if voice is None and instruct is None:
            click.echo(f"Note: {_no_voice_note(model_)}", err=True)
        pieces = _stdin_pieces(stream) if text == "-" else text
        gen = None
        if greedy:  # greedy, with the guidance asked for (or the folder's)
            gen = GenerationConfig.greedy().replace(guidance=model_.generation.guidance)
        chunks = model_.stream(
            pieces,
            voice,
            language=language,
            seed=seed,
            speed=speed,
            arrangement=arrangement,
            generation=gen,
            instruct=instruct,
        )
        rate = model_.sample_rate
        with (
            warnings.catch_warnings(record=True) as caught,
            _Sink(output, rate, stream) as sink,
            tqdm(unit="s", desc="speech", leave=False, disable=not sys.stderr.isatty()) as bar,
        ):
            warnings.simplefilter("always", GenerationWarning)
            begun = time.perf_counter()
            first = None
            for chunk in chunks:
                if first is None:
                    first = time.perf_counter() - begun
                sink.write(chunk)
                bar.update(round(len(chunk) / rate, 2))
            total = sink.samples
        if total == 0:
            raise OmnispeechError("no speech was generated: the text is empty")
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in caught:
        if issubclass(warning.category, GenerationWarning):
            click.echo(f"Warning: {warning.message}", err=True)
    took = time.perf_counter() - start
    click.echo(
        f"{output}\t{total / rate:.2f} s of speech, seed {model_.last_seed}, "
        f"first audio after {first:.2f} s, {took:.1f} s in all",
        err=True,
    )


def _transcribe(clip: Path, language: str) -> tuple[str, str]:
    """The bundled recogniser's transcript of a reference clip and the language it heard
    (``language`` when it heard none), echoed so that a wrong one can be corrected."""
    from omnispeech.pipelines import ASR

    heard = ASR.from_pretrained().transcribe(clip)
    if not heard.text.strip():
        raise click.ClickException(
            f"{clip}: the recogniser heard no words; give --ref-text or leave it out"
        )
    click.echo(f"reference transcript ({heard.language or language}): {heard.text}", err=True)
    return heard.text, heard.language or language


def _no_voice_note(model) -> str:
    """What a model does with no voice given, and how to choose one (one line)."""
    # With an empty speaker slot the talker samples a voice of its own, and which one
    # follows from the sampling seed: name that, rather than speak in some voice unannounced.
    what = "the model speaks in an unconditioned voice of its own, one per sampling seed"
    if model.speaker_encoder is not None:
        return f"no --clone or --voice: {what}; pass --clone REF (a 3-15 s clip) to choose one"
    if model.speakers:
        names = ", ".join(model.speakers)
        return f"no --speaker: {what}; built-in speakers: {names}"
    return f"no --speaker or --instruct: {what}"


class _Sink:
    """Audio chunks to a file (at the end, or as they come with ``stream``) or to stdout."""

    def __init__(self, path: Path, rate: int, stream: bool) -> None:
        self.path, self.rate, self.stream = path, rate, stream
        self.samples = 0
        self._parts: list = []
        self._file = None

    def __enter__(self) -> _Sink:
        import soundfile as sf

        from omnispeech.errors import AudioFileError

        if str(self.path) != "-" and self.stream:
            try:
                self._file = sf.SoundFile(str(self.path), "w", self.rate, 1)
            except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as err:
                raise AudioFileError(f"{self.path}: cannot write audio: {err}") from None
        return self

    def write(self, chunk) -> None:
        import numpy as np

        self.samples += len(chunk)
        if str(self.path) == "-":
            pcm = (np.clip(chunk, -1.0, 1.0) * 32767.0).astype("<i2")
            sys.stdout.buffer.write(pcm.tobytes())
            sys.stdout.buffer.flush()
        elif self._file is not None:
            self._file.write(np.clip(chunk, -1.0, 1.0))
            self._file.flush()
        else:
            self._parts.append(chunk)

    def __exit__(self, *exc) -> None:
        import numpy as np

        from omnispeech.audio import save_audio

        if self._file is not None:
            self._file.close()
        elif self._parts and exc[0] is None:
            save_audio(self.path, np.concatenate(self._parts), self.rate)
