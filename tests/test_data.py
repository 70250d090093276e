"""omnispeech.data: a tiny espeak-ng corpus built from nothing (manifest, splits, seed, resume)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from omnispeech.cli import main
from omnispeech.data import (
    BuildConfig,
    EngineMissingWarning,
    EspeakNG,
    Sentence,
    build_corpus,
    corpus_stats,
    read_manifest,
)
from omnispeech.data import engines as engines_module
from omnispeech.data.build import trim_and_normalise
from omnispeech.data.engines import Mbrola
from omnispeech.data.text import (
    BUILTIN,
    MEDIAWIKI,
    SCRATCH,
    clean_sentences,
    gather_sentences,
    locale_language,
    strip_wiki_markup,
    web_language,
)
from omnispeech.errors import InputError

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng)",
)
VARIANTS = ("m1", "m3", "f1", "f3", "klatt3", "whisper", "Marco")  # 7 pseudo-speakers
FIELDS = {"path", "text", "language", "speaker", "engine", "licence", "duration", "split"}


def _sentences() -> dict[str, list[Sentence]]:
    # The built-in sentences only: no catalog is read, so the test needs nothing installed.
    return gather_sentences(locale_dirs=(), wesnoth_glob=None, mediawiki_dir=None, scratch_dir=None)


def _build(out: Path, seed: int = 0, **kwargs):
    config = BuildConfig(out=out, hours=1 / 60, languages=("de", "en", "fr"), seed=seed, **kwargs)
    return build_corpus(config, [EspeakNG(variants=VARIANTS)], _sentences(), progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    out = tmp_path_factory.mktemp("corpus")
    _build(out, workers=2)
    return out


@needs_espeak
def test_manifest_fields_and_audio(corpus: Path) -> None:
    records = read_manifest(corpus)
    assert {r["language"] for r in records} == {"de", "en", "fr"}
    assert 40 < sum(r["duration"] for r in records) < 180  # about one minute of audio
    for r in records:
        assert FIELDS <= r.keys()
        assert r["engine"] == "espeak-ng" and r["licence"] == "GPL-3.0-or-later"
        assert r["split"] in {"train", "dev", "test"}
        for rate, rel in r["paths"].items():
            wav, sr = sf.read(str(corpus / rel), dtype="float32")
            assert sr == int(rate) and wav.ndim == 1
            assert abs(len(wav) / sr - r["duration"]) < 0.01
            assert 0.05 < np.abs(wav).max() <= 10 ** (-1 / 20) + 1e-3  # normalised, not silent
    assert set(records[0]["paths"]) == {"16000", "24000"}


@needs_espeak
def test_splits_are_speaker_disjoint(corpus: Path) -> None:
    records = read_manifest(corpus)
    speakers = {
        s: {r["speaker"] for r in records if r["split"] == s} for s in ("train", "dev", "test")
    }
    assert speakers["train"] and speakers["dev"] and speakers["test"]
    assert not speakers["train"] & speakers["dev"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]


@needs_espeak
def test_splits_are_sentence_disjoint(corpus: Path) -> None:
    records = read_manifest(corpus)
    for lang in ("de", "en", "fr"):
        texts = {
            s: {r["text"] for r in records if r["split"] == s and r["language"] == lang}
            for s in ("train", "dev", "test")
        }
        assert texts["train"]
        assert not texts["train"] & texts["dev"]
        assert not texts["train"] & texts["test"]
        assert not texts["dev"] & texts["test"]


@needs_espeak
def test_same_seed_same_manifest_and_resume(corpus: Path, tmp_path: Path) -> None:
    manifest = (corpus / "manifest.jsonl").read_text()
    # Built again from nothing in one process: the same manifest as with 2 workers.
    other = tmp_path / "again"
    _build(other)
    assert (other / "manifest.jsonl").read_text() == manifest
    # Resume: delete one utterance's record; only that one is synthesised again.
    records = read_manifest(other)
    (other / "meta" / records[3]["language"] / f"{records[3]['id']}.json").unlink()
    result = _build(other)
    assert result.synthesised == 1 and result.kept == len(records)
    assert (other / "manifest.jsonl").read_text() == manifest
    # Another seed: another plan.
    assert _build(tmp_path / "seed1", seed=1).manifest.read_text() != manifest


@needs_espeak
def test_unspeakable_text_dropped_and_counted(tmp_path: Path) -> None:
    bad = [Sentence(t, "en", BUILTIN) for t in ("...", "  ,  ;  ", "…", "()")]
    config = BuildConfig(out=tmp_path, hours=1 / 3600, languages=("en",), min_sentences=4)
    result = build_corpus(config, [EspeakNG(variants=("m1",))], {"en": bad}, progress=False)
    assert result.kept == 0 and result.dropped["silent"] >= 4  # each text at least once
    assert not list(tmp_path.glob("wav16000/**/*.wav"))  # nothing written as silence
    assert json.loads((tmp_path / "build.json").read_text())["dropped"]


def test_trim_and_normalise() -> None:
    sr = 16000
    t = np.arange(sr) / sr
    tone = 0.01 * np.sin(2 * np.pi * 220 * t)
    wav = np.concatenate([np.zeros(sr), tone, np.zeros(sr)]).astype(np.float32)
    out = trim_and_normalise(wav, sr)
    assert abs(len(out) / sr - 1.1) < 0.02  # 1 s of tone + 50 ms kept at each end
    assert np.abs(out).max() <= 10 ** (-1 / 20) + 1e-6


@needs_espeak
def test_missing_engine_skipped_with_warning(tmp_path: Path) -> None:
    config = BuildConfig(out=tmp_path, hours=1 / 360, languages=("en",))
    engines = [EspeakNG(program="espeak-ng-not-installed"), EspeakNG(variants=("m1", "f1"))]
    with pytest.warns(EngineMissingWarning, match="apt-get install espeak-ng"):
        result = build_corpus(config, engines, _sentences(), progress=False)
    assert result.kept > 0


def test_missing_program_is_the_one_named(monkeypatch) -> None:
    # MBROLA voices need espeak-ng and the mbrola program: name the one that is missing.
    found = {"espeak-ng": "/usr/bin/espeak-ng"}
    monkeypatch.setattr(engines_module.shutil, "which", found.get)
    mbrola = Mbrola()
    assert not mbrola.available()
    hint = mbrola.install_hint()
    assert "`mbrola` not found" in hint and "espeak-ng`" not in hint
    assert EspeakNG().available()
    found.clear()
    assert "`espeak-ng`, `mbrola` not found" in Mbrola().install_hint()


@needs_espeak
def test_unknown_language_errors(tmp_path: Path) -> None:
    config = BuildConfig(out=tmp_path, hours=0.01, languages=("xx",))
    with pytest.raises(InputError, match="omnispeech data languages"):
        build_corpus(config, [EspeakNG(variants=("m1",))], _sentences(), progress=False)
    args = ["data", "build", "--hours", "0.01", "--languages", "en,xx", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "xx" in result.output and "omnispeech data languages" in result.output


def test_text_helpers() -> None:
    assert locale_language("pt_BR") == "pt" and locale_language("sr@latin") is None
    kept = clean_sentences(["Open the file.\nSave %s now please", "Too short", "A b c d e."], "en")
    assert kept == []  # 3 words, then under 15 characters, then a format string
    assert clean_sentences(["Please open the door now."] * 2, "en") == ["Please open the door now."]


@needs_espeak
def test_stats_table(corpus: Path) -> None:
    table = corpus_stats(corpus)
    assert "| languages | 3 |" in table and "espeak-ng" in table


@needs_espeak
def test_resume_takes_splits_from_the_plan(corpus: Path, tmp_path: Path) -> None:
    # Other splits over the same folder: utterances whose voice changed with their split are
    # synthesised again, the others are reused; the manifest equals a fresh build's.
    resumed = tmp_path / "resumed"
    shutil.copytree(corpus, resumed)
    result = _build(resumed, dev_fraction=0.3)
    assert 0 < result.synthesised < result.kept
    fresh = _build(tmp_path / "fresh", dev_fraction=0.3).manifest.read_text()
    assert (
        (resumed / "manifest.jsonl").read_text() == fresh != (corpus / "manifest.jsonl").read_text()
    )


@needs_espeak
def test_corpus_feeds_the_evaluation(corpus: Path, tiny_asr_dir: Path) -> None:
    """The tiny corpus goes straight into `omnispeech eval`: ASR on its test split (a random
    model, so the error rate is high but defined), the codec on its 24 kHz files."""
    from omnispeech.eval import evaluate_asr, evaluate_codec
    from omnispeech.pipelines import ASR, Codec
    from tests.vocoder_ref import GOLDEN

    score = evaluate_asr(ASR.from_pretrained(tiny_asr_dir), corpus / "manifest.jsonl", limit=3)
    assert 0 < len(score.utterances) <= 3
    assert set(score.per_language) <= {"de", "en", "fr"} and score.overall.cer > 0
    wavs = sorted((corpus / "wav24000").rglob("*.wav"))[:2]
    codec = evaluate_codec(Codec.from_pretrained(GOLDEN), wavs, max_seconds=1.0)
    assert codec.seconds > 0 and codec.mean > 0


def _write_json(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _web_sources(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny MediaWiki (core and one extension) and a tiny scratch-l10n package."""
    wiki = tmp_path / "mediawiki"
    core = wiki / "languages" / "i18n"
    _write_json(
        core / "en.json",
        {
            "@metadata": {"authors": []},
            "greet": "Welcome to the wiki.",
            "same": "Leave it as it is.",
        },
    )
    _write_json(
        core / "de.json",
        {
            "@metadata": {"authors": ["Jemand Mit Langem Namen Hier"]},
            "greet": "Willkommen im [[Project:Wiki|großen Wiki]] der ''freien'' Enzyklopädie.",
            "save": "Bitte speichere die Seite, bevor du gehst.",
            "same": "Leave it as it is.",  # untranslated: dropped
            "plural": "Die Seite hat $1 {{PLURAL:$1|Version|Versionen}} und mehr davon.",
        },
    )
    _write_json(core / "qqq.json", {"greet": "Shown on the main page of every wiki."})
    _write_json(
        core / "tt-cyrl.json", {"greet": "Бу бик '''зур''' һәм бик матур [[Казан]] шәһәре."}
    )
    _write_json(
        core / "hak.json",
        {"a": "Hak-fa he yit-chúng ke ngî-ngièn.", "b": "客家話係一種語言，佢係漢語个一種。"},
    )
    _write_json(core / "sr-ec.json", {"greet": "Добродошли на вики, драги пријатељу мој."})
    ext = wiki / "extensions" / "Cite" / "i18n"
    _write_json(ext / "en.json", {"note": "The reference is missing from the page."})
    _write_json(ext / "de.json", {"note": "Der Verweis fehlt auf dieser Seite leider."})

    scratch = tmp_path / "scratch" / "package"
    blocks = scratch / "editor" / "blocks"
    _write_json(blocks / "en.json", {"MOVE": "move ten steps to the left side", "GO": "go"})
    _write_json(blocks / "mi.json", {"MOVE": "neke kia tekau ngā hikoinga ki te taha mauī"})
    about = scratch / "www" / "scratch-website.about-l10njson"
    _write_json(about / "en.json", {"about.one": {"message": "Scratch is a coding community."}})
    _write_json(
        about / "mi.json",
        {"about.one": {"message": "He hapori waehere a Scratch mō ngā tamariki."}},
    )
    _write_json(about / "zh-cn.json", {"about.one": {"message": "全球最大的儿童编程社区之一。"}})
    return wiki, scratch


def test_mediawiki_and_scratch_sources(tmp_path: Path) -> None:
    wiki, scratch = _web_sources(tmp_path)
    found = gather_sentences(
        locale_dirs=(), wesnoth_glob=None, mediawiki_dir=wiki, scratch_dir=scratch
    )
    texts = {lang: [s.text for s in ss] for lang, ss in found.items()}
    assert texts["de"][-3:] == [  # folders in sorted order: extensions/, then languages/
        "Der Verweis fehlt auf dieser Seite leider.",
        "Willkommen im großen Wiki der freien Enzyklopädie.",
        "Bitte speichere die Seite, bevor du gehst.",
    ]
    assert not any("Leave it" in t or "$1" in t for t in texts["de"])
    assert texts["tt"] == ["Бу бик зур һәм бик матур Казан шәһәре."]
    assert texts["hak"] == ["Hak-fa he yit-chúng ke ngî-ngièn."]  # no Han for the hak voice
    assert texts["mi"] == [
        "neke kia tekau ngā hikoinga ki te taha mauī",
        "He hapori waehere a Scratch mō ngā tamariki.",
    ]
    assert texts["zh"] == ["全球最大的儿童编程社区之一。"]  # filtered by characters, not words
    assert "sr" not in texts and "qqq" not in texts
    assert {s.source for s in found["mi"]} == {SCRATCH}
    assert {s.source for s in found["tt"]} == {MEDIAWIKI}
    assert MEDIAWIKI.licence == "GPL-2.0-or-later" and SCRATCH.licence == "AGPL-3.0-only"
    assert (
        gather_sentences(
            locale_dirs=(),
            wesnoth_glob=None,
            mediawiki_dir=wiki,
            scratch_dir=scratch,
            redistributable=True,
        ).keys()
        == found.keys()
    )  # both kept, like the GPL catalogs
    # Absent folders are skipped.
    missing = tmp_path / "nothing"
    assert (
        gather_sentences(
            locale_dirs=(), wesnoth_glob=None, mediawiki_dir=missing, scratch_dir=missing
        )
        == _sentences()
    )


def test_web_language_and_markup() -> None:
    assert web_language("tt-cyrl") == "tt" and web_language("gom-deva") == "kok"
    assert web_language("hak-latn") == "hak" and web_language("zh-hans") == "zh"
    assert web_language("yue") == "yue" and web_language("pt-br") is None
    assert web_language("qqq") is None and web_language("en") is None
    assert strip_wiki_markup("''a'' [[P|b]] [[c]] '''d'''") == "a b c d"


def test_plan_splits_the_spoken_sentences_by_voice_and_text() -> None:
    # A language with far more text than the plan speaks: each split still gets its share of
    # the spoken sentences, and every engine of a split takes turns.
    from omnispeech.data.build import plan_corpus
    from omnispeech.data.engines import Voice

    voices = [
        Voice("espeak-ng", f"en+v{i}", "en", f"espeak-v{i}", "GPL-3.0-or-later", True)
        for i in range(20)
    ] + [Voice("flite", n, "en", f"cmu-{n}", "BSD", True) for n in ("slt", "awb", "rms")]
    sentences = {"en": [Sentence(f"sentence {i} of many", "en", BUILTIN) for i in range(5000)]}
    config = BuildConfig(out=Path("unused"), hours=0.01, min_sentences=200, seed=3)
    plan = plan_corpus(sentences, {"en": voices}, config)
    assert len(plan) == 200 and len({u.text for u in plan}) == 200
    counts = Counter(u.split for u in plan)
    assert counts["dev"] == counts["test"] == 20 and counts["train"] == 160
    train_engines = Counter(u.voice.engine for u in plan if u.split == "train")
    if "flite" in train_engines:  # the natural voices share the turns with espeak-ng
        assert train_engines["flite"] == train_engines["espeak-ng"]
    assert len({u.voice.name for u in plan if u.split == "train"}) > 10
