"""TTS evaluation's judges and voices: skipped / inserted words, PocketSphinx as the independent
English judge, similarity to other voices, and synthesising held-out utterances by cloning
each speaker from another of their recordings."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import soundfile as sf

from omnispeech.errors import InputError
from omnispeech.eval import (
    PocketSphinx,
    edit_counts,
    evaluate_tts,
    plan_clones,
    read_manifest,
    synthesize_plans,
)
from tests.test_eval_metrics import RATE, PitchEncoder, Scripted, voiced

needs_jiwer = pytest.mark.skipif(
    importlib.util.find_spec("jiwer") is None,
    reason="needs the eval extra: pip install -e '.[test,eval]'",
)
needs_sphinx = pytest.mark.skipif(
    importlib.util.find_spec("pocketsphinx") is None,
    reason="needs the eval extra: pip install -e '.[test,eval]'",
)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@needs_jiwer
def test_skipped_and_inserted_words_are_counted_apart():
    skipped = edit_counts("one two three four", "one three four")
    assert (skipped.word_deletions, skipped.word_insertions, skipped.word_errors) == (1, 0, 1)
    repeated = edit_counts("one two three four", "one two two three four four")
    assert (repeated.word_deletions, repeated.word_insertions) == (0, 2)
    assert repeated.insertion_rate == pytest.approx(0.5)
    total = skipped + repeated
    assert (total.word_deletions, total.word_insertions, total.words) == (1, 2, 8)
    assert total.deletion_rate == pytest.approx(1 / 8)
    assert edit_counts("a b", "").word_deletions == 2
    assert edit_counts("", "a b").word_insertions == 2


@needs_sphinx
@needs_jiwer
def test_pocketsphinx_understands_real_english_and_refuses_other_languages():
    judge = PocketSphinx()
    text = (EXAMPLES / "austen.txt").read_text()
    heard = judge.transcribe(EXAMPLES / "austen.wav", language="en").text
    # A person reading clearly: the judge gets most words (it scores 0.36 here: "mr" for
    # "Mister", a mumbled name); a broken decoder scores about 1.
    assert edit_counts(text, heard).wer < 0.5, heard
    # In-memory samples at 16 kHz are read as they are.
    samples = sf.read(EXAMPLES / "austen.wav", dtype="float32")[0]
    assert judge.transcribe(samples).text == heard
    with pytest.raises(InputError, match="English only"):
        judge.transcribe(EXAMPLES / "austen.wav", language="de")


def _corpus(root: Path) -> Path:
    """Two English speakers (two clips each, f0 120 and 240 Hz) and a German clip of s1."""
    lines = [
        {"path": "a1.wav", "text": "one two three", "speaker": "s1", "f0": 120, "seconds": 1.0},
        {"path": "a2.wav", "text": "four five", "speaker": "s1", "f0": 125, "seconds": 2.0},
        {"path": "b1.wav", "text": "six seven", "speaker": "s2", "f0": 240, "seconds": 1.0},
        {"path": "b2.wav", "text": "eight nine", "speaker": "s2", "f0": 235, "seconds": 1.5},
        {"path": "d1.wav", "text": "eins zwei", "speaker": "s1", "f0": 122, "seconds": 1.2},
    ]
    root.mkdir(parents=True, exist_ok=True)
    for line in lines:
        seconds = line.pop("seconds")
        sf.write(root / line["path"], voiced(seconds, f0=line.pop("f0")), RATE)
        line |= {
            "duration": seconds,
            "language": "de" if line["path"][0] == "d" else "en",
            "split": "test",
        }
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return manifest


@needs_jiwer
def test_similarity_to_other_voices_and_judges_per_language(tmp_path):
    manifest = _corpus(tmp_path / "corpus")
    synth = tmp_path / "synth"
    synth.mkdir()
    for name, f0 in (("a1", 121), ("a2", 126), ("b1", 239), ("b2", 236), ("d1", 123)):
        sf.write(synth / f"{name}.wav", voiced(1.0, f0=f0), RATE)
    english = Scripted(
        {"a1.wav": "one two three", "a2.wav": "four four five", "b1.wav": "six"}
        | {"b2.wav": "eight nine"}
    )
    rest = Scripted({"d1.wav": "eins zwei"})
    score = evaluate_tts(
        synth,
        manifest,
        asr=rest,
        speaker_encoder=PitchEncoder(),
        languages=["en", "de"],
        judges={"en": ("sphinx", english)},
    )
    by_name = {Path(u.path).name: u for u in score.utterances}
    # Each synthesised clip is closer to its own speaker than to the other one.
    for u in score.utterances:
        assert u.other_similarity is not None and u.speaker_similarity > u.other_similarity
    en = score.per_language["en"]
    assert en.similarity_margin == pytest.approx(en.speaker_similarity - en.other_similarity)
    assert en.similarity_margin > 0.1
    # Every English line went to the English judge, the German one to the ASR model.
    assert by_name["a2.wav"].judge == "sphinx" and by_name["d1.wav"].judge == "asr"
    assert en.judge == "sphinx" and score.per_language["de"].judge == "asr"
    assert en.inserted == pytest.approx(1 / 9) and en.skipped == pytest.approx(1 / 9)
    report = score.to_markdown()
    assert "other voices" in report and "| sphinx |" in report


def test_clone_plans_take_another_clip_of_the_same_speaker(tmp_path):
    manifest = _corpus(tmp_path / "corpus")
    entries = read_manifest(manifest)
    root = manifest.parent
    plans = {p.entry.path.name: p for p in plan_clones(entries, entries, tmp_path / "o", root)}
    # Never the sentence itself; the longest other clip in the same language.
    assert plans["a1.wav"].reference.path.name == "a2.wav"
    assert plans["a2.wav"].reference.path.name == "a1.wav"
    assert plans["d1.wav"].reference.path.name == "a2.wav"  # s1 has no other German clip
    assert plans["b1.wav"].out == tmp_path / "o" / "b1.wav"
    cross = plan_clones(entries, entries, tmp_path / "o", root, cross_language=True)
    assert {p.entry.path.name: p.reference.path.name for p in cross}["a1.wav"] == "d1.wav"

    lonely = [e for e in entries if e.speaker == "s2"][:1]
    with pytest.raises(InputError, match="'s2' has no other recording"):
        plan_clones(lonely, lonely, tmp_path / "o", root)
    nameless = [read_manifest(manifest)[0].__class__(path=root / "x.wav", text="hi", line=7)]
    with pytest.raises(InputError, match="line 7: no speaker"):
        plan_clones(nameless, entries, tmp_path / "o", root)


class _EchoTTS:
    """A stand-in TTS: 'speaks' a tone as long as the text, records what it was asked."""

    sample_rate = RATE

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def voice(self, clip, ref_text=None, language="auto"):  # noqa: ANN001, ANN201
        self.calls.append(("voice", Path(clip).name, ref_text, language))
        return Path(clip).name

    def synthesize(self, text, voice, language="auto", seed=None):  # noqa: ANN001, ANN201
        self.calls.append(("say", text, voice, language, seed))
        return voiced(0.1 * len(text))


def test_synthesize_plans_writes_each_file_once(tmp_path):
    manifest = _corpus(tmp_path / "corpus")
    entries = read_manifest(manifest, languages=["en"])
    plans = plan_clones(entries, read_manifest(manifest), tmp_path / "o", manifest.parent)
    tts = _EchoTTS()
    ticks = []
    assert synthesize_plans(tts, plans, in_context=True, seed=3, progress=ticks.append) == 4
    assert len(ticks) == 4 and sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "a1.wav",
        "a2.wav",
        "b1.wav",
        "b2.wav",
    ]
    assert ("voice", "a2.wav", "four five", "en") in tts.calls
    assert ("say", "one two three", "a2.wav", "en", 3) in tts.calls
    assert sf.info(tmp_path / "o" / "a1.wav").duration == pytest.approx(1.3, abs=1e-3)
    # A second run keeps what is there (a stopped evaluation resumes).
    (tmp_path / "o" / "b2.wav").unlink()
    assert synthesize_plans(_EchoTTS(), plans) == 1
    speaker_only = _EchoTTS()
    synthesize_plans(speaker_only, plans[:1], in_context=False)
    assert speaker_only.calls == []  # a1 exists: nothing to do
    (tmp_path / "o" / "a1.wav").unlink()
    synthesize_plans(speaker_only, plans[:1], in_context=False)
    assert speaker_only.calls[0] == ("voice", "a2.wav", None, "en")


def test_cli_synthesizes_the_held_out_voices_then_scores_them(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from omnispeech.cli import main
    from tests.tts_ref import short_guard, tiny_tts

    manifest = _corpus(tmp_path / "corpus")
    folder = tiny_tts(tmp_path / "tts")
    synth = tmp_path / "synth"
    args = ["eval", "tts", str(synth), str(manifest), "--languages", "en", "--judge", "none"]
    with short_guard(monkeypatch, 0.4, 0.0):
        result = CliRunner().invoke(
            main, [*args, "--synthesize", "-m", str(folder), "--cross-language", "--no-similarity"]
        )
    assert result.exit_code == 0, result.output
    assert "synthesised 4 utterances" in result.output
    assert sorted(p.name for p in synth.iterdir()) == ["a1.wav", "a2.wav", "b1.wav", "b2.wav"]
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["overall"]["utterances"] == 4 and summary["overall"]["cer"] is None
    # Options that only make sense when synthesising are refused without it, in one line.
    refused = CliRunner().invoke(main, [*args, "--in-context"])
    assert refused.exit_code != 0 and refused.output.count("\n") == 1
    assert "--synthesize" in refused.output
    for option in ("--contrast", "--guidance"):
        refused = CliRunner().invoke(main, [*args, option, "2"])
        assert refused.exit_code != 0 and refused.output.count("\n") == 1
        assert option in refused.output and "go with --synthesize" in refused.output
    # A model without a speaker centre takes no other strength than 1, said in one line.
    refused = CliRunner().invoke(
        main, [*args, "--synthesize", "-m", str(folder), "--contrast", "2"]
    )
    assert refused.exit_code == 1 and refused.output.count("\n") == 1
    assert "no speaker centre" in refused.output
    refused = CliRunner().invoke(main, [*args, "--asr-model", str(folder)])
    assert refused.exit_code != 0 and refused.output.count("\n") == 1
    assert "--judge none" in refused.output
