"""``omnispeech.eval`` metrics that behave: perfect scores for identical input, monotonic
degradation with noise, speakers told apart, text normalised per script, reports rendered."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from omnispeech.errors import DependencyError, InputError
from omnispeech.eval import (
    SpeakerEncoder,
    default_speaker_encoder,
    edit_counts,
    error_rates,
    evaluate_asr,
    evaluate_tts,
    mel_distance,
    normalize_text,
    pesq_wb,
    primary_metric,
    read_manifest,
    signal_metrics_available,
    signal_scores,
    stoi,
    tokenize,
    write_report,
)

RATE = 16_000

# The metrics come from the eval extra; `pip install -e '.[test,eval]'` runs these tests.
_EXTRA = "needs the eval extra: pip install -e '.[test,eval]'"
needs_jiwer = pytest.mark.skipif(importlib.util.find_spec("jiwer") is None, reason=_EXTRA)
needs_signal = pytest.mark.skipif(not signal_metrics_available(), reason=_EXTRA)


def voiced(seconds: float, f0: float = 140.0, rate: int = RATE) -> np.ndarray:
    """A speech-like signal: a harmonic source with a gliding pitch, in syllable bursts."""
    t = np.arange(round(seconds * rate)) / rate
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)
    pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 25))
    return (0.3 * envelope * x / np.abs(x).max()).astype(np.float32)


def with_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(x.shape[0]).astype(np.float32)
    return x + noise * np.sqrt(np.mean(x**2) / 10 ** (snr_db / 10))


# ---------------------------------------------------------------------------- signal metrics


@needs_signal
def test_identical_audio_scores_perfect():
    x = voiced(2.0)
    score = signal_scores(x, x, RATE, require=True)
    assert score.pesq_wb == pytest.approx(4.64, abs=0.01)
    assert score.stoi == pytest.approx(1.0, abs=1e-6)
    assert score.mel_distance == 0.0


@needs_signal
def test_noise_degrades_pesq_stoi_and_mel_monotonically(capsys):
    clean = voiced(3.0)
    levels = (40, 30, 20, 10)  # SNR in dB, cleanest first
    scores = [signal_scores(clean, with_noise(clean, snr), RATE, require=True) for snr in levels]
    with capsys.disabled():
        for snr, s in zip(levels, scores, strict=True):
            print(f"\n  SNR {snr:2d} dB: PESQ-WB {s.pesq_wb:.3f}  STOI {s.stoi:.4f}", end="")
            print(f"  mel {s.mel_distance:.3f}", end="")
    pesq = [s.pesq_wb for s in scores]
    intelligibility = [s.stoi for s in scores]
    distance = [s.mel_distance for s in scores]
    assert all(a > b for a, b in pairwise(pesq)), pesq
    assert all(a > b for a, b in pairwise(intelligibility)), intelligibility
    assert all(a < b for a, b in pairwise(distance)), distance
    assert pesq[0] < 4.0  # even 40 dB SNR is audibly not a copy


@needs_signal
def test_signal_metrics_resample_and_refuse_short_audio():
    x = voiced(1.5, rate=24_000)
    # 24 kHz input is resampled to PESQ-WB's 16 kHz; identical stays perfect.
    assert pesq_wb(x, x, 24_000) == pytest.approx(4.64, abs=0.01)
    assert stoi(x, x, 24_000) == pytest.approx(1.0, abs=1e-6)
    assert mel_distance(x, x[:-100], 24_000) == 0.0  # cut to the shorter
    with pytest.raises(InputError, match="PESQ needs at least"):
        pesq_wb(x[:2000], x[:2000], 24_000)
    with pytest.raises(InputError, match="STOI needs at least"):
        stoi(x[:2000], x[:2000], 24_000)


def test_missing_optional_package_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pesq(name, *args, **kwargs):
        if name == "pesq":
            raise ImportError("No module named 'pesq'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pesq)
    x = voiced(1.0)
    with pytest.raises(DependencyError, match=r"pip install 'omnispeech\[eval\]'"):
        pesq_wb(x, x, RATE)


# ---------------------------------------------------------------------------- speakers


def _espeak(path: Path, voice: str, text: str, pitch: int = 50) -> Path:
    subprocess.run(
        ["espeak-ng", "-v", voice, "-p", str(pitch), "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    return path


def test_same_speaker_scores_higher_than_a_different_one(tmp_path, capsys):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: no two voices to compare")
    try:
        encoder = default_speaker_encoder()
    except DependencyError as exc:
        pytest.skip(str(exc))
    text_a = "The quick brown fox jumps over the lazy dog near the river bank."
    text_b = "Please call Stella and ask her to bring these things with her from the store."
    a = _espeak(tmp_path / "m3_a.wav", "en-us+m3", text_a)
    b = _espeak(tmp_path / "m3_b.wav", "en-us+m3", text_b)
    other = _espeak(tmp_path / "f4_b.wav", "en-us+f4", text_b, pitch=80)
    same = encoder.similarity(a, b)
    different = encoder.similarity(a, other)
    with capsys.disabled():
        print(f"\n  speaker similarity: same voice {same:.3f}, different voice {different:.3f}")
    assert encoder.similarity(a, a) == pytest.approx(1.0, abs=1e-5)
    # Different text, same voice beats the same text, different voice.
    assert same > different + 0.1
    assert same > encoder.similarity(b, other)


# ---------------------------------------------------------------------------- text


def test_normalisation_per_script():
    assert normalize_text("Hello, World!  Don't STOP.") == "hello world dont stop"
    # Full-width forms fold (NFKC); spaces and punctuation inside Chinese are layout.
    assert normalize_text("你好，世界！ 我有 ３ 个 Apple。") == "你好世界我有3个apple"
    assert tokenize("你好世界我有3个apple") == [
        "你",
        "好",
        "世",
        "界",
        "我",
        "有",
        "3",
        "个",
        "apple",
    ]
    assert normalize_text("Straße ΣΊΣΥΦΟΣ") == "strasse σίσυφοσ"  # casefold, not lower
    assert normalize_text("call 911 now") == "call 911 now"  # digits kept as digits


@needs_jiwer
def test_chinese_cer_ignores_spaces_punctuation_and_case():
    perfect = error_rates(["你好，世界！我有3个Apple。"], ["你好 世界 我有 3 个 apple"], "zh")
    assert perfect.cer == 0 and perfect.wer == 0 and perfect.metric == "cer"
    one_wrong = error_rates(["你好世界"], ["你坏世界"], "zh")
    assert one_wrong.cer == 0.25 and one_wrong.wer == 0.25  # WER counts characters here
    assert one_wrong.primary == 0.25


@needs_jiwer
def test_english_wer_and_cer_match_jiwer():
    rates = error_rates(["Please call Stella, and ask her."], ["please call still in ask her"])
    assert rates.metric == "wer"
    assert rates.wer == pytest.approx(2 / 6)
    assert rates.cer == pytest.approx(4 / 30)
    assert error_rates(["a b c"], ["A, B; C!"]).wer == 0


@needs_jiwer
def test_rates_are_corpus_level_and_refuse_empty_references():
    rates = error_rates(["one two three four", "five"], ["one two three four", "six"], "en")
    assert rates.wer == pytest.approx(1 / 5)  # not the mean of 0 and 1
    assert edit_counts("", "extra words").word_errors == 2
    with pytest.raises(InputError, match="no text"):
        error_rates(["?!"], ["words"])
    with pytest.raises(InputError, match="pair up"):
        error_rates(["a", "b"], ["a"])


@pytest.mark.parametrize(
    ("language", "metric"),
    [
        ("zh", "cer"),
        ("yue", "cer"),
        ("ja", "cer"),
        ("ja-JP", "cer"),
        ("th", "cer"),
        ("lo", "cer"),
        ("km", "cer"),
        ("my", "cer"),
        ("bo", "cer"),
        ("Chinese", "cer"),
        ("en", "wer"),
        ("de", "wer"),
        ("ko", "wer"),  # Hangul puts spaces between words
        ("ar", "wer"),
    ],
)
def test_primary_metric_per_language(language, metric):
    assert primary_metric(language) == metric


def test_primary_metric_from_script_when_no_language():
    assert primary_metric(None, "สวัสดีครับ") == "cer"
    assert primary_metric("", "こんにちは世界") == "cer"
    assert primary_metric(None, "hello world") == "wer"


# ---------------------------------------------------------------------------- harness


class Scripted:
    """A stand-in ASR model answering a fixed transcript per file name."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.languages: list[str | None] = []

    def transcribe(self, audio, *, language=None):  # noqa: ANN001, ANN201
        self.languages.append(language)
        return type("T", (), {"text": self.answers[Path(audio).name]})()


def write_corpus(root: Path, lines: list[dict]) -> Path:
    (root / "clips").mkdir(parents=True, exist_ok=True)
    for i, line in enumerate(lines):
        if "path" in line:
            sf.write(root / line["path"], voiced(0.6 + 0.1 * i, f0=120 + 20 * i), RATE)
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    return manifest


CORPUS = [
    {"path": "clips/e1.wav", "text": "Hello world.", "language": "en", "split": "test"},
    {"path": "clips/e2.wav", "text": "Good morning to you", "language": "en", "split": "test"},
    {"path": "clips/z1.wav", "text": "你好世界", "language": "zh", "split": "test"},
    {"path": "clips/t1.wav", "text": "not scored", "language": "en", "split": "train"},
]


@needs_jiwer
def test_evaluate_asr_per_language_table(tmp_path):
    manifest = write_corpus(tmp_path, CORPUS)
    model = Scripted(
        {
            "e1.wav": "hello, world",
            "e2.wav": "good morning to",
            "z1.wav": "你好 世 界",
            "t1.wav": "x",
        }
    )
    score = evaluate_asr(model, manifest)
    assert model.languages == ["en", "en", "zh"]  # forced from the manifest, test split only
    assert list(score.per_language) == ["en", "zh"]
    en, zh = score.per_language["en"], score.per_language["zh"]
    assert (en.utterances, en.metric, en.wer) == (2, "wer", pytest.approx(1 / 6))
    assert (zh.utterances, zh.metric, zh.cer) == (1, "cer", 0.0)
    assert score.overall.utterances == 3 and score.overall.language == "all"
    markdown = score.to_markdown()
    assert "| en | 2 |" in markdown and "| zh | 1 |" in markdown and "| all | 3 |" in markdown
    assert f"**{1 / 6:.4f}**" in markdown  # en's primary (WER) in bold
    assert "| zh | 1 | **0.0000** | 0.0000 | CER |" in markdown
    data = json.loads(score.to_json())
    assert data["per_language"]["en"]["primary"] == pytest.approx(1 / 6, abs=1e-6)
    assert len(data["utterances"]) == 3 and data["utterances"][2]["hypothesis"] == "你好 世 界"
    write_report(score, tmp_path / "r.json", tmp_path / "r.md")
    assert json.loads((tmp_path / "r.json").read_text())["task"] == "asr"
    assert (tmp_path / "r.md").read_text() == markdown

    only = evaluate_asr(model, manifest, languages=["zh"], limit=1, force_language=False)
    assert list(only.per_language) == ["zh"] and model.languages[-1] is None


def test_manifest_errors_are_one_clear_line(tmp_path):
    manifest = write_corpus(tmp_path, CORPUS)
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match=r"no utterance in split 'dev' \(splits: 'test', 'train'"):
        read_manifest(manifest, "dev")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "a.wav", "text": "x"}\n\n{"path": "b.wav"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:3: missing or non-string field 'text'"):
        read_manifest(bad)
    bad.write_text("[1, 2]\n")
    with pytest.raises(InputError, match="expected a JSON object"):
        read_manifest(bad)
    assert [e.path.name for e in read_manifest(manifest, None, ["en"], limit=2)] == [
        "e1.wav",
        "e2.wav",
    ]


class PitchEncoder(SpeakerEncoder):
    """A toy speaker encoder: the normalised long-term spectrum below 1 kHz."""

    sample_rate = RATE
    embedding_size = 64

    def embed(self, wav: np.ndarray) -> np.ndarray:
        spectrum = np.abs(np.fft.rfft(wav, 2 * RATE))[: 2 * 1000 : 2 * 1000 // 64]
        return (spectrum / np.linalg.norm(spectrum)).astype(np.float32)


@needs_jiwer
def test_evaluate_tts_folder_and_pairs(tmp_path):
    manifest = write_corpus(tmp_path / "corpus", CORPUS)
    synth = tmp_path / "synth"
    (synth / "clips").mkdir(parents=True)
    refs = {e.path.name: e for e in read_manifest(manifest)}
    # e1: the reference itself (mirrored path); e2: a different voice, twice as long (by name);
    # z1: the same voice with noise, as flac.
    sf.write(synth / "clips" / "e1.wav", sf.read(refs["e1.wav"].path)[0], RATE)
    sf.write(synth / "e2.flac", voiced(2 * 0.7, f0=300), RATE)
    sf.write(synth / "z1.wav", with_noise(sf.read(refs["z1.wav"].path)[0], 30), RATE)
    model = Scripted({"e1.wav": "hello world", "e2.flac": "good morning", "z1.wav": "你好世界"})
    score = evaluate_tts(synth, manifest, asr=model, speaker_encoder=PitchEncoder())
    by_name = {Path(u.reference).name: u for u in score.utterances}
    assert by_name["e1.wav"].speaker_similarity == pytest.approx(1.0, abs=1e-6)
    assert by_name["e1.wav"].duration_ratio == pytest.approx(1.0)
    assert by_name["e2.wav"].duration_ratio == pytest.approx(2.0, abs=1e-3)
    assert by_name["e2.wav"].speaker_similarity < by_name["z1.wav"].speaker_similarity
    assert score.per_language["zh"].cer == 0 and score.per_language["en"].wer == pytest.approx(
        2 / 6
    )
    assert "| en | 2 |" in score.to_markdown()
    assert json.loads(score.to_json())["overall"]["utterances"] == 3

    pairs = [(synth / "clips" / "e1.wav", refs["e1.wav"].path)]
    alone = evaluate_tts(pairs, manifest, similarity=False)
    assert alone.overall.utterances == 1 and alone.overall.speaker_similarity is None
    assert alone.overall.cer is None  # no ASR model, no intelligibility
    with pytest.raises(InputError, match="1 of 3 utterances have no synthesised audio"):
        (synth / "z1.wav").unlink()
        evaluate_tts(synth, manifest, similarity=False)
    with pytest.raises(InputError, match="not a reference"):
        evaluate_tts([(synth / "e2.flac", tmp_path / "other.wav")], manifest, similarity=False)
