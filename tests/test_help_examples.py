"""Every example in every ``--help`` and in the READMEs works as written.

Each example must name commands and options that exist and parse as written (click's own
parser, on the command it names), name only repository files that exist, and give training
commands the training data they need. The examples a fresh checkout can run are run, in a
folder where tiny random models stand in for the released checkpoints under the same names;
the others (released models the tests cannot ship, servers, hours of corpus building or
training) are checked by parsing only, each with its reason in :func:`_why_not_run`.
"""

from __future__ import annotations

import glob
import json
import re
import shlex
import shutil
from pathlib import Path

import click
import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from omnispeech.cli import main
from omnispeech.codes import save_codes
from tests.tts_ref import tiny_tts
from tests.vocoder_ref import GOLDEN

ROOT = Path(__file__).resolve().parents[1]
DOCS = (
    "README.md",
    "recipes/codec/README.md",
    "recipes/asr/README.md",
    "recipes/speaker/README.md",
    "recipes/tts/README.md",
)
# Top-level folders of the repository: a path under one of them must exist in it.
# (Not omnispeech/: examples may write into it, e.g. a trained model into omnispeech/bundled/.)
REPO_DIRS = ("recipes", "benchmarks", "docs", "tests", ".ci", "examples")

# Names the examples give to models, and the tiny stand-in that answers to each.
ASR_NAMES = ("./Qwen3-ASR-0.6B", "./Qwen3-ASR-1.7B", "runs/asr/model")
TTS_NAMES = (
    "./Qwen3-TTS-12Hz-0.6B-Base", "path/to/Qwen3-TTS-12Hz-0.6B-Base", "./Base", "M",
    "runs/tts/model",
)  # fmt: skip
CODEC_NAMES = ("./Qwen3-TTS-Tokenizer-12Hz", "runs/demo/model")
CLIPS = ("talk.wav", "me.wav", "sample.wav", "voice.wav", "a.flac", "b.ogg", "lecture.ogg")
TEXTS = {"talk.txt": "What the recording says.\n", "story.txt": "Once upon a time.\nThe end.\n"}
# Commands whose examples run when their model is a stand-in (the others parse only).
RUNNABLE = {
    ("asr",),
    ("align",),
    ("tts",),
    ("codec", "encode"),
    ("codec", "decode"),
    ("vocode",),
}


# -- collecting the examples -------------------------------------------------------------------
def _commands(command: click.Command = main, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            yield from _commands(command.get_command(click.Context(command), name), (*path, name))


def _joined(lines: list[str]) -> list[str]:
    """Lines with their backslash continuations joined."""
    out, current = [], ""
    for line in lines:
        current = f"{current} {line.strip()}" if current else line.strip()
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        if current:
            out.append(current)
        current = ""
    return out


def _help_examples(text: str) -> list[str]:
    """The lines of the ``Examples:`` block of a help text."""
    match = re.search(r"Examples?:\n((?:[ \t]+\S.*\n?)+)", text)
    return _joined(match.group(1).splitlines()) if match else []


def _doc_examples(text: str) -> list[str]:
    """The shell lines of a markdown file's bash / text code blocks."""
    blocks = re.findall(r"```(?:bash|sh|text)\n(.*?)```", text, re.S)
    return [line for block in blocks for line in _joined(block.splitlines())]


def _all_examples() -> list[tuple[str, str]]:
    found = []
    for path, command in _commands():
        for example in _help_examples(command.help or ""):
            found.append((" ".join(("omnispeech", *path, "--help")), example))
    for doc in DOCS:
        for example in _doc_examples((ROOT / doc).read_text()):
            found.append((doc, example))
    return found


EXAMPLES = _all_examples()


def _argv(segment: list[str]) -> list[str] | None:
    """The arguments after ``omnispeech`` in one shell command, or None for another program."""
    while segment and re.fullmatch(r"[A-Z_]+=\S*", segment[0]):
        segment = segment[1:]  # VAR=value prefixes set the environment
    if segment[:1] == ["omnispeech"]:
        return segment[1:]
    if "-m" in segment and segment[0] in ("torchrun", "python", "python3"):
        i = segment.index("-m")
        if segment[i + 1 : i + 2] == ["omnispeech"]:
            return segment[i + 2 :]
    return None


def _segments(example: str) -> list[list[str]]:
    """The commands of a shell line (split at ``&&``), each cut at its first redirection."""
    tokens = shlex.split(example, comments=True)
    out, current = [], []
    for token in [*tokens, "&&"]:
        if token in ("&&", ";"):
            cut = next((i for i, t in enumerate(current) if t in ("|", "<", ">")), None)
            out.append(current[:cut])
            current = []
        else:
            current.append(token)
    return [s for s in out if s]


def _resolve(argv: list[str]) -> tuple[tuple[str, ...], click.Command, list[str]]:
    """The command an argument list names, and the arguments left for it."""
    command: click.Command = main
    path: tuple[str, ...] = ()
    while isinstance(command, click.Group) and argv and not argv[0].startswith("-"):
        sub = command.get_command(click.Context(command), argv[0])
        assert sub is not None, f"no command {' '.join((*path, argv[0]))!r}"
        command, path, argv = sub, (*path, argv[0]), argv[1:]
    return path, command, argv


def _repo_paths(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t.split("/")[0] in REPO_DIRS and "/" in t]


# -- every example ------------------------------------------------------------------------------
def test_the_examples_are_found():
    commands = {
        " ".join(_resolve(a)[0]) for _, e in EXAMPLES for s in _segments(e) if (a := _argv(s))
    }
    # Every command a user meets first has at least one example that is checked here.
    for name in ("asr", "align", "tts", "codec encode", "codec decode", "vocode", "train codec",
                 "train asr", "train tts", "train speaker", "eval codec", "eval asr", "data build",
                 "demo", "serve"):  # fmt: skip
        assert name in commands, name
    assert len(EXAMPLES) > 60


@pytest.mark.parametrize(("where", "example"), EXAMPLES, ids=[e for _, e in EXAMPLES])
def test_every_example_parses_and_names_what_exists(where, example, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus").mkdir()  # `data stats corpus` wants an existing folder
    for segment in _segments(example):
        for path in _repo_paths(segment):
            assert (ROOT / path).exists(), f"{where}: {path} is not in the repository"
        if segment[0] in ("python", "python3") and segment[1].endswith(".py"):
            assert (ROOT / segment[1]).is_file(), f"{where}: no script {segment[1]}"
        argv = _argv(segment)
        if argv is None:
            continue
        path, command, rest = _resolve(argv)
        assert not isinstance(command, click.Group), f"{where}: {example!r} names no command"
        try:
            ctx = command.make_context(" ".join(("omnispeech", *path)), list(rest))
        except click.ClickException as exc:
            pytest.fail(f"{where}: {example!r}: {exc.format_message()}")
        if path[:1] == ("train",):
            _check_training_data(path[1], ctx.params)


def _check_training_data(kind: str, params: dict) -> None:
    """A training example must give training data: in its config, or with --train."""
    from omnispeech.training import (
        ASRTrainConfig,
        CodecTrainConfig,
        SpeakerTrainConfig,
        TTSTrainConfig,
    )

    config = ROOT / params["config_file"]
    kinds = {
        "codec": CodecTrainConfig,
        "asr": ASRTrainConfig,
        "tts": TTSTrainConfig,
        "speaker": SpeakerTrainConfig,
    }
    cfg = kinds[kind].from_file(config)
    assert cfg.data.train or params["train_data"], f"{config.name}: no --train and no data.train"


# -- the runnable ones --------------------------------------------------------------------------
def _why_not_run(path: tuple[str, ...], params: dict, argv: list[str]) -> str | None:
    """Why an example is only parsed (None: it runs)."""
    if path not in RUNNABLE:
        # Servers, corpus building and training take minutes to hours, evaluations want real
        # corpora, and `data languages` reads every text source on the machine (minutes).
        return "a server, a corpus, training, an evaluation, or minutes of work"
    model = params.get("model")
    stand_ins = {"asr": ASR_NAMES, "align": ASR_NAMES, "tts": TTS_NAMES}.get(path[0], CODEC_NAMES)
    if path != ("data", "languages") and model is not None and model not in stand_ins:
        return f"{model} is a released model (CustomVoice, VoiceDesign, Omni) not shipped here"
    if params.get("speaker") or params.get("instruct"):
        return "built-in speakers and voice design need those released models"
    return None


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, tiny_asr_dir):
    """A folder holding what the examples name, with tiny random models under the names of
    the released ones, and bundled ASR, TTS and codec models for the commands that name none."""
    from omnispeech.pipelines import ASR

    root = tmp_path_factory.mktemp("examples")
    asr = ASR.from_pretrained(tiny_asr_dir)
    torch.manual_seed(0)
    asr.ctc_head = torch.nn.Linear(asr.encoder.out_dim, asr.decoder.cfg.vocab_size + 1)
    asr_dir = root / "bundled" / "asr-small"
    asr.save_pretrained(asr_dir)
    # As a model trained by `omnispeech train asr` on the corpus, it knows Swahili.
    config = json.loads((asr_dir / "config.json").read_text())
    config["support_languages"] = ["English", "German", "Swahili"]
    (asr_dir / "config.json").write_text(json.dumps(config))
    tts_dir = tiny_tts(root / "tts")
    shutil.copytree(tts_dir, root / "bundled" / "tts-small")  # for the commands naming none
    # The codec examples' codes files (below) are made for GOLDEN, so here the bundled codec
    # is a folder of its own rather than the tiny voice's speech_tokenizer/.
    shutil.copytree(GOLDEN, root / "bundled" / "codec-small")
    for names, source in ((ASR_NAMES, asr_dir), (TTS_NAMES, tts_dir), (CODEC_NAMES, GOLDEN)):
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, root / name)
    # 1.2 s: long enough to clone a voice from, short enough to transcribe in a moment (random
    # weights never end a transcript, which stops at 32 + 20 tokens per second).
    t = np.arange(int(1.2 * 24000)) / 24000
    clip = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )
    for name in CLIPS:
        sf.write(root / name, clip, 24000)
    # What `align` places needs a step of 80 ms per token of the transcript (and one between
    # repeats): 3 s for the examples' sentences, which the tiny tokenizer spells in ~20 pieces.
    sf.write(root / "talk.wav", np.tile(clip, 3)[: 3 * 24000], 24000)
    for name, text in TEXTS.items():
        (root / name).write_text(text)
    shutil.copytree(ROOT / "examples", root / "examples")  # the clips the README's commands name
    codes = np.random.default_rng(0).integers(0, 64, (16, 6))
    for name in ("codes.npz", "voice.npz"):
        save_codes(root / name, codes, sample_rate=24000, frame_rate=12.5, codebook_size=64)
    return root


def _run_plan(example: str) -> list[list[str]]:
    """The argument lists of an example's omnispeech commands that run here (may be none)."""
    plan = []
    for segment in _segments(example):
        argv = _argv(segment)
        if argv is None:
            continue
        path, command, rest = _resolve(argv)
        try:
            params = command.make_context("omnispeech", list(rest)).params
        except click.ClickException:
            continue  # reported by test_every_example_parses_and_names_what_exists
        if _why_not_run(path, params, argv) is None:
            plan.append(argv)
    return plan


def _signature(example: str) -> tuple:
    """What an example exercises: its commands and the options it sets (not their values)."""
    out = []
    for argv in _run_plan(example):
        path, command, rest = _resolve(argv)
        ctx = command.make_context("omnispeech", list(rest))
        given = sorted(
            p.name for p in command.params if ctx.get_parameter_source(p.name).name != "DEFAULT"
        )
        out.append((path, tuple(n for n in given if n != "model")))
    return tuple(out)


# Each way of using a command runs once (the help and the READMEs repeat many examples);
# the model names differ only in which stand-in answers.
RUN = list({_signature(e): (w, e) for w, e in reversed(EXAMPLES) if _run_plan(e)}.values())


@pytest.mark.parametrize(("where", "example"), RUN, ids=[e for _, e in RUN])
def test_runnable_examples_run(where, example, sandbox, monkeypatch):
    from omnispeech import bundled
    from omnispeech.pipelines import tts_loop

    monkeypatch.chdir(sandbox)
    monkeypatch.setattr(bundled, "_HERE", sandbox / "bundled")
    monkeypatch.setitem(bundled.BUNDLED, "omnispeech-codec-small", "codec-small")
    # Random weights never end an utterance; a short guard keeps each example to a moment.
    monkeypatch.setattr(tts_loop, "GUARD_SECONDS", 0.4)
    monkeypatch.setattr(tts_loop, "GUARD_SECONDS_PER_TOKEN", 0.0)
    for name in ("OMNISPEECH_ASR_MODEL", "OMNISPEECH_TTS_MODEL", "OMNISPEECH_CODEC_MODEL"):
        monkeypatch.delenv(name, raising=False)
    tokens = shlex.split(example, comments=True)
    # The shell would feed `< file` to standard input.
    stdin = (sandbox / tokens[tokens.index("<") + 1]).read_text() if "<" in tokens else None
    for argv in _run_plan(example):
        # ... and expand globs.
        argv = [m for a in argv for m in (sorted(glob.glob(a)) if "*" in a else [a])]
        result = CliRunner().invoke(main, argv, input=stdin)
        assert result.exit_code == 0, f"{where}: {example!r}\n{result.output}"
