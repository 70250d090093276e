"""``omnispeech train codec|asr|tts|speaker``: train a codec, a recogniser, a text-to-speech
model or its speaker encoder from a JSON config, on one process or many."""

from __future__ import annotations

import dataclasses
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def train() -> None:
    """Train omnispeech models on your own audio.

    \b
    Examples:
      omnispeech train codec -c recipes/codec/cpu_demo.json --train corpus/train -o runs/demo
      omnispeech train asr -c recipes/asr/tiny.json --train corpus/manifest.jsonl -o runs/asr
      omnispeech train tts -c recipes/tts/tiny.json --train corpus/manifest.jsonl \\
          --codec runs/demo/model -o runs/tts
      torchrun --nproc_per_node 2 -m omnispeech train codec -c recipes/codec/cpu_demo.json \\
          --train corpus/train -o runs/ddp
    """


# The options every trainer shares, listed after its own ones in --help.
_RUN_OPTIONS = (
    click.option(
        "--steps", type=click.IntRange(min=1), help="Train until this step (default: run.steps)."
    ),
    click.option(
        "--resume/--no-resume",
        default=True,
        show_default=True,
        help="Continue from the newest checkpoint in --out, exactly where it stopped "
        "(--no-resume refuses a folder that already holds checkpoints).",
    ),
    click.option(
        "--device", default=None, help="torch device (default: this process's GPU, else cpu)."
    ),
    click.option("--quiet", is_flag=True, help="No progress bar."),
)


def _config_option(sections: str, recipes: str):
    """``--config/-c FILE``, the run's JSON config."""
    return click.option(
        "--config",
        "-c",
        "config_file",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"JSON config with sections {sections} (see {recipes}).",
    )


def _out_option(what: str):
    """``--out/-o DIRECTORY``, where the run writes (``what`` lists its contents)."""
    return click.option(
        "--out",
        "-o",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        help=f"Output folder: {what}",
    )


def _run_options(command):
    """Add --steps, --resume/--no-resume, --device and --quiet to a training command."""
    for option in reversed(_RUN_OPTIONS):  # click lists the last applied first
        command = option(command)
    return command


@train.command(context_settings={"help_option_names": ["-h", "--help"]})
@_config_option("model, data, optim, loss, run", "recipes/codec/")
@_out_option("checkpoints/, model/ (the exported codec) and log.jsonl.")
@click.option(
    "--train",
    "train_data",
    metavar="PATH",
    help="Training audio (folder or JSONL manifest); overrides data.train.",
)
@click.option("--valid", metavar="PATH", help="Held-out audio; overrides data.valid.")
@click.option(
    "--finetune",
    metavar="FOLDER",
    help="Train only the decoder of this exported codec (OUT/model of an earlier run); its "
    "encoder and codebooks stay frozen, so codes made with it keep their meaning. Overrides "
    "data.finetune.",
)
@click.option(
    "--export-init",
    is_flag=True,
    help="Before training (one process only), export the untrained codec with its codebooks "
    "initialised on the first batch to OUT/model-init: a baseline to measure against.",
)
@_run_options
def codec(  # noqa: PLR0913 - one option each
    config_file: Path,
    out: Path,
    train_data: str | None,
    valid: str | None,
    finetune: str | None,
    export_init: bool,
    steps: int | None,
    resume: bool,
    device: str | None,
    quiet: bool,
) -> None:
    """Train a codec (causal conv encoder, split RVQ, Code2Wav decoder, GAN losses).

    Run it as is for one process, or under torchrun for several (one per GPU, or CPU processes
    with gloo). A checkpoint is written every run.save_every steps and at the end; the codec is
    exported to OUT/model, which `omnispeech codec encode|decode --model OUT/model` reads.
    Ctrl-C (or SIGTERM) stops after the step in progress and saves it; the same command then
    continues exactly where the run stopped.

    \b
    Examples:
      omnispeech train codec -c recipes/codec/cpu_demo.json --train corpus/train \\
          --valid corpus/valid -o runs/demo --export-init
      omnispeech train codec -c recipes/codec/cpu_demo.json --train corpus/train \\
          -o runs/demo --steps 20000   # train on, past the config's steps
      torchrun --nproc_per_node 2 -m omnispeech train codec -c recipes/codec/cpu_demo.json \\
          --train corpus/train -o runs/ddp
      omnispeech train codec -c recipes/codec/decoder_finetune.json \\
          --train corpus/manifest.jsonl --finetune runs/codec/model -o runs/codec_ft
    """
    from omnispeech.training import CodecTrainConfig, CodecTrainer

    def make(cfg: CodecTrainConfig, workers) -> CodecTrainer:
        trainer = CodecTrainer(cfg, out, workers)
        fresh = not resume or trainer.latest_checkpoint() is None
        if export_init and fresh and trainer.workers.world_size == 1:
            trainer.export_initial(out / "model-init")
        return trainer

    paths = {"train": train_data, "valid": valid, "finetune": finetune}
    _train_run(
        lambda: CodecTrainConfig.from_file(config_file), paths, make, device, steps, resume, quiet
    )


@train.command(context_settings={"help_option_names": ["-h", "--help"]})
@_config_option("model, data, augment, optim, run", "recipes/asr/")
@_out_option("tokenizer.json, checkpoints/, model/ (the export) and log.jsonl.")
@click.option(
    "--train",
    "train_data",
    metavar="MANIFEST",
    help="Training manifest (JSONL: path, text, language, split); overrides data.train.",
)
@click.option("--valid", metavar="MANIFEST", help="Held-out manifest; overrides data.valid.")
@_run_options
def asr(  # noqa: PLR0913 - one option each
    config_file: Path,
    out: Path,
    train_data: str | None,
    valid: str | None,
    steps: int | None,
    resume: bool,
    device: str | None,
    quiet: bool,
) -> None:
    """Train a speech recogniser (AuT encoder, Qwen3 decoder, CTC head for timestamps).

    The training manifest's transcripts teach a byte-level BPE tokenizer first
    (OUT/tokenizer.json); audio is augmented on the fly (speed, pitch, reverberation, noise,
    telephone band, codec artefacts, gain, SpecAugment). A checkpoint is written every
    run.save_every steps and at the end, with the held-out error rates in OUT/log.jsonl; the
    model is exported to OUT/model, a Qwen3-ASR folder that `omnispeech asr --model
    OUT/model` reads. Ctrl-C (or SIGTERM) stops after the step in progress and saves it; the
    same command continues a stopped run exactly.

    \b
    Examples:
      omnispeech data build --hours 2 --min-sentences 400 --redistributable -o corpus
      omnispeech train asr -c recipes/asr/bundled.json --train corpus/manifest.jsonl \\
          --valid corpus/manifest.jsonl -o runs/asr
      torchrun --nproc_per_node 2 -m omnispeech train asr -c recipes/asr/bundled.json \\
          --train corpus/manifest.jsonl -o runs/ddp
    """
    from omnispeech.training import ASRTrainConfig, ASRTrainer

    paths = {"train": train_data, "valid": valid}
    _train_run(
        lambda: ASRTrainConfig.from_file(config_file),
        paths,
        lambda cfg, workers: ASRTrainer(cfg, out, workers),
        device,
        steps,
        resume,
        quiet,
    )


@train.command(context_settings={"help_option_names": ["-h", "--help"]})
@_config_option("model, data, optim, run, sampling", "recipes/tts/")
@_out_option("tokenizer.json, cache/, checkpoints/, model/ (the export), log.jsonl.")
@click.option(
    "--train",
    "train_data",
    metavar="MANIFEST",
    help="Training manifest (JSONL: path, text, language, split); overrides data.train.",
)
@click.option("--valid", metavar="MANIFEST", help="Held-out manifest; overrides data.valid.")
@click.option(
    "--codec",
    metavar="FOLDER",
    help="Speech tokenizer folder whose codes the model learns (a Qwen3-TTS speech_tokenizer/, "
    "or a codec from `omnispeech train codec`); overrides data.codec.",
)
@click.option(
    "--speaker-encoder",
    metavar="FOLDER",
    help="Frozen speaker encoder for the speaker slot (a Qwen3-TTS Base folder, or OUT/model of "
    "`omnispeech train speaker`); overrides model.speaker_encoder.",
)
@_run_options
def tts(  # noqa: PLR0913 - one option each
    config_file: Path,
    out: Path,
    train_data: str | None,
    valid: str | None,
    codec: str | None,
    speaker_encoder: str | None,
    steps: int | None,
    resume: bool,
    device: str | None,
    quiet: bool,
) -> None:
    """Train a text-to-speech model of the Qwen3-TTS architecture (talker + code predictor).

    First, once: a byte-level BPE tokenizer is trained on the transcripts (OUT/tokenizer.json;
    with data.text_frontend "espeak-ipa" the transcripts are phonemized instead) and every
    utterance is encoded with the codec into OUT/cache (files that cannot be decoded are
    skipped and counted); a single stream with data.alignment "espeak" or "asr" also aligns
    every transcript once. Then the talker learns codebook 0 (and when to stop) in the
    released dual-track arrangement, text beside speech, and the code predictor learns
    codebooks 1..K-1 of each frame. A checkpoint is written every run.save_every steps and at
    the end, with the held-out losses in OUT/log.jsonl; the model is exported to OUT/model, a
    Qwen3-TTS folder that `omnispeech tts --model OUT/model` reads. Ctrl-C (or SIGTERM) stops
    after the step in progress and saves it; the same command continues a stopped run exactly.

    \b
    Examples:
      omnispeech data build --hours 2 --min-sentences 400 --redistributable -o corpus
      omnispeech train tts -c recipes/tts/tiny.json --train corpus/manifest.jsonl \\
          --valid corpus/manifest.jsonl --codec Qwen3-TTS-Tokenizer-12Hz -o runs/tts
      torchrun --nproc_per_node 2 -m omnispeech train tts -c recipes/tts/tiny.json \\
          --train corpus/manifest.jsonl --codec runs/codec/model -o runs/tts-ddp
    """
    from omnispeech.training import TTSTrainConfig, TTSTrainer

    def announce(trainer: TTSTrainer) -> None:
        cfg = trainer.cfg
        if trainer.workers.is_main and trainer.aligned_evenly:
            click.echo(
                f"aligned evenly (the aligner could not place them): {trainer.aligned_evenly}",
                err=True,
            )
        if trainer.workers.is_main and cfg.data.in_context > 0:
            b = trainer.batcher
            click.echo(
                f"in-context references: {b.with_partner} of {len(b)} utterances share speaker "
                "and language with another",
                err=True,
            )

    def load() -> TTSTrainConfig:
        cfg = TTSTrainConfig.from_file(config_file)
        if speaker_encoder:
            folder = str(Path(speaker_encoder).resolve())
            cfg = cfg.replace(model=cfg.model.replace(speaker_encoder=folder))
        return cfg

    paths = {"train": train_data, "valid": valid, "codec": codec}
    _train_run(
        load,
        paths,
        lambda cfg, workers: TTSTrainer(cfg, out, workers, progress=not quiet),
        device,
        steps,
        resume,
        quiet,
        announce,
    )


@train.command(context_settings={"help_option_names": ["-h", "--help"]})
@_config_option("model, data, optim, run", "recipes/speaker/")
@_out_option("checkpoints/, model/ (the exported encoder) and log.jsonl.")
@click.option(
    "--train",
    "train_data",
    metavar="MANIFEST",
    help="Training manifest (JSONL: path or paths, speaker, split); overrides data.train.",
)
@click.option(
    "--valid",
    metavar="MANIFEST",
    help="Held-out manifest (its data.valid_split, speakers unseen in training); overrides "
    "data.valid.",
)
@_run_options
def speaker(  # noqa: PLR0913 - one option each
    config_file: Path,
    out: Path,
    train_data: str | None,
    valid: str | None,
    steps: int | None,
    resume: bool,
    device: str | None,
    quiet: bool,
) -> None:
    """Train the ECAPA-TDNN speaker encoder of Qwen3-TTS Base on a corpus's voices.

    The encoder learns to tell the training split's speakers (the manifest's "speaker" field)
    apart from random 24 kHz crops, lightly augmented (noise, gain), with an additive angular
    margin softmax. A checkpoint is written every run.save_every steps and at the end, with the
    held-out split's equal error rate and same/other-speaker similarities in OUT/log.jsonl; the
    encoder is exported to OUT/model, a folder that SpeakerEncoder.from_pretrained reads and
    that `omnispeech train tts` takes as model.speaker_encoder (its model.enc_dim must equal the
    talker's hidden_size). Ctrl-C (or SIGTERM) stops after the step in progress and saves it;
    the same command continues a stopped run exactly.

    \b
    Examples:
      omnispeech data build --hours 2 --min-sentences 400 --redistributable -o corpus
      omnispeech train speaker -c recipes/speaker/bundled.json --train corpus/manifest.jsonl \\
          --valid corpus/manifest.jsonl -o runs/speaker
      torchrun --nproc_per_node 2 -m omnispeech train speaker -c recipes/speaker/bundled.json \\
          --train corpus/manifest.jsonl -o runs/speaker-ddp
    """
    from omnispeech.training import SpeakerTrainConfig, SpeakerTrainer

    paths = {"train": train_data, "valid": valid}
    _train_run(
        lambda: SpeakerTrainConfig.from_file(config_file),
        paths,
        lambda cfg, workers: SpeakerTrainer(cfg, out, workers),
        device,
        steps,
        resume,
        quiet,
    )


def _train_run(  # noqa: PLR0913 - the shared options of every training command
    load_config: Callable[[], Any],
    paths: dict[str, str | None],
    make_trainer: Callable[[Any, Any], Any],
    device: str | None,
    steps: int | None,
    resume: bool,
    quiet: bool,
    announce: Callable[[Any], None] | None = None,
) -> None:
    """Read the config, point its ``data`` section at the paths given on the command line,
    build the trainer on this process's place among the workers, train, and report.

    Args:
        load_config: reads the command's config file.
        paths: ``data`` fields given as options (None: keep the config's); made absolute.
        make_trainer: ``(config, workers) -> trainer`` (a :class:`CheckpointedRun` with
            ``fit``, ``step``, ``stopped_by`` and, for trainers that read manifests,
            ``skipped``).
        announce: prints what the trainer found before training (after the skipped count).
    """
    from omnispeech.errors import OmnispeechError
    from omnispeech.training import Workers

    try:
        cfg = load_config()
        if any(paths.values()):
            given = {k: str(Path(v).resolve()) for k, v in paths.items() if v}
            cfg = cfg.replace(data=cfg.data.replace(**given))
        workers = Workers.from_env(device)
        trainer = make_trainer(cfg, workers)
        _echo_skipped(trainer)
        if announce is not None:
            announce(trainer)
        folder = trainer.fit(steps=steps, resume=resume, progress=not quiet)
        outcome = _Outcome.of(trainer, folder)
        del trainer  # see _Outcome: the process group is left only once the trainer is gone
        workers.close()
    except OmnispeechError as exc:
        raise click.ClickException(str(exc)) from None
    outcome.report()


def _echo_skipped(trainer) -> None:
    """One line counting the utterances a trainer left out, by reason (main process only)."""
    skipped = getattr(trainer, "skipped", None)  # the codec trainer reads folders too
    if trainer.workers.is_main and skipped:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))
        click.echo(f"skipped utterances: {counts}", err=True)


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """How a run ended, kept after its trainer is gone.

    The trainer's DistributedDataParallel wrappers hold the process group. Left alive until
    the interpreter exits, gloo's threads were torn down after Python and aborted a process
    that had finished its run ("terminate called without an active exception"), so each
    command notes the outcome, drops its trainer, and only then leaves the group.
    """

    folder: Path
    step: int
    stopped: signal.Signals | None
    checkpoint: Path | None
    is_main: bool

    @classmethod
    def of(cls, trainer, folder: Path) -> _Outcome:
        stopped = trainer.stopped_by
        checkpoint = trainer.latest_checkpoint() if stopped is not None else None
        return cls(folder, trainer.step, stopped, checkpoint, trainer.workers.is_main)

    def report(self) -> None:
        """The last line of a run: where the model is, or where it stopped and how to go on.

        A run stopped by a signal exits with 128 + the signal's number (130 for Ctrl-C), as
        a shell reports a program killed by it, so that scripts can tell it from a finished
        run.
        """
        if self.is_main:
            if self.stopped is None:
                click.echo(f"{self.folder}\tstep {self.step}", err=True)
            else:
                click.echo(
                    f"stopped by {self.stopped.name} at step {self.step}, saved in "
                    f"{self.checkpoint}; run the same command to continue",
                    err=True,
                )
        if self.stopped is not None:
            sys.exit(128 + int(self.stopped))
