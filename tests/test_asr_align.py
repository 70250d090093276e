"""Forced alignment and word timestamps from a CTC head: the Viterbi path, word grouping,
mismatch detection, and the pipeline and CLI around them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from tokenizers import Tokenizer

from omnispeech.errors import InputError
from omnispeech.pipelines import ASR
from omnispeech.pipelines.asr_align import (
    AlignmentError,
    align,
    forced_path,
    step_times,
    token_pieces,
)
from omnispeech.testing import tiny_tokenizer

BLANK = 5


def _peaked(frames: list[int], classes: int = 6, sure: float = 0.97) -> np.ndarray:
    """Log-probabilities ``[T, classes]`` that put ``sure`` on the given class per step."""
    probs = np.full((len(frames), classes), (1 - sure) / (classes - 1))
    probs[np.arange(len(frames)), frames] = sure
    return np.log(probs)


def test_step_times_follow_the_chunked_token_grid():
    t = step_times(27)
    assert t[0].tolist() == [0.0, 0.08]
    assert t[12].tolist() == [0.96, 1.0]  # the 13th token of a chunk ends with the chunk
    assert t[13].tolist() == [1.0, 1.08]  # the next chunk starts at 1 s
    assert t[26].tolist() == [2.0, 2.08]


def test_forced_path_finds_the_emitting_steps_and_handles_repeats():
    # 0 0 - 1 - - 2 2 -    (a repeated target needs a blank between its two emissions)
    lp = _peaked([0, 0, BLANK, 1, BLANK, BLANK, 2, BLANK, 2, BLANK])
    path = forced_path(lp, [0, 1, 2, 2], BLANK)
    assert path.tolist() == [0, 0, -1, 1, -1, -1, 2, -1, 3, -1]
    with pytest.raises(AlignmentError, match="too long"):
        forced_path(lp[:4], [0, 1, 2, 2], BLANK)  # 4 targets with a repeat need 5 steps


def test_align_groups_tokens_into_words_and_refuses_a_wrong_transcript():
    lp = _peaked([BLANK, 0, 1, BLANK, BLANK, 2, 3, BLANK])
    result = align(lp, [0, 1, 2, 3], ["he", "llo", " wor", "ld"], BLANK, [True, False, True, False])
    assert [w.text for w in result.words] == ["hello", "world"]
    assert (result.words[0].start, result.words[0].end) == (0.08, 0.24)
    assert (result.words[1].start, result.words[1].end) == (0.40, 0.56)
    assert result.gap == pytest.approx(0.0) and result.words[0].score > 0.9
    with pytest.raises(AlignmentError, match="does not match"):
        align(lp, [3, 2, 1, 0], ["a", "b", "c", "d"], BLANK, [True] * 4)
    # Without the check (timestamps of the model's own transcript) it is still placed.
    loose = align(lp, [3, 2, 1, 0], ["a", "b", "c", "d"], BLANK, [True] * 4, check=False)
    assert loose.gap > 1.0 and len(loose.words) == 4


def test_token_pieces_rebuild_the_text_and_mark_word_starts():
    tok = tiny_tokenizer()
    for text in ("open the file now", "日本語のテキスト", "schließe das Fenster"):
        ids = tok.encode(text, add_special_tokens=False).ids
        pieces, starts = token_pieces(tok, ids)
        assert "".join(pieces) == text
        words = []
        for piece, start in zip(pieces, starts, strict=True):
            if start:
                words.append("")
            words[-1] += piece
        if " " in text:
            assert [w.strip() for w in words] == text.split()
        else:  # unspaced script: one word per character
            assert words == list(text)


def test_released_models_without_a_ctc_head_say_so(tiny_asr_dir, tmp_path):
    asr = ASR.from_pretrained(tiny_asr_dir)
    assert asr.ctc_head is None
    wav = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    with pytest.raises(InputError, match="no CTC head"):
        asr.transcribe(wav, timestamps=True)
    with pytest.raises(InputError, match="no CTC head"):
        asr.align(wav, "hello")
    path = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(path, wav, 16000)
    done = subprocess.run(
        [sys.executable, "-m", "omnispeech", "align", str(path), "hello", "-m", str(tiny_asr_dir)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "no CTC head" in done.stderr


def test_ctc_head_round_trips_and_timestamps_lie_inside_the_audio(ctc_asr_dir, tmp_path):
    import soundfile as sf

    asr = ASR.from_pretrained(ctc_asr_dir)
    assert asr.ctc_head is not None
    wav = (0.1 * np.sin(np.arange(40000) / 7)).astype(np.float32)
    result = asr.align(wav, "open the file")
    assert [w.text for w in result.words] == ["open", "the", "file"]
    ends = [w.end for w in result.words]
    assert ends == sorted(ends) and 0 <= result.words[0].start and ends[-1] <= 2.5 + 0.08
    path = tmp_path / "a.wav"
    sf.write(path, wav, 16000)
    cmd = [sys.executable, "-m", "omnispeech", "align", str(path), "open the file"]
    done = subprocess.run([*cmd, "-m", str(ctc_asr_dir)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [w["word"] for w in json.loads(done.stdout)["words"]] == ["open", "the", "file"]


def test_the_tokenizer_fixture_is_byte_level():
    assert isinstance(tiny_tokenizer(), Tokenizer)


def test_timestamp_evaluation_compares_with_the_engines_word_times(ctc_asr_dir, tmp_path):
    """The scorer re-speaks espeak-ng lines with the library, aligns them and counts one error
    per boundary between words; other engines' lines and numbers are left out."""
    import soundfile as sf

    from omnispeech.eval.timestamps import evaluate_timestamps

    spoken = []

    def speak(text: str, voice: str):
        # A stand-in engine: words every 0.4 s, one second of quiet tone per word.
        words = text.split()
        spoken.append(voice)
        wav = (0.1 * np.sin(np.arange(16000 * len(words)) / 9)).astype(np.float32)
        return wav, 16000, [type("W", (), {"start": 0.4 * i})() for i in range(len(words))]

    sf.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    lines = [
        {"path": "a.wav", "text": "open the file", "language": "en", "split": "test",
         "engine": "espeak-ng", "voice": "en-us+f3"},
        {"path": "a.wav", "text": "save it now", "language": "en", "split": "test",
         "engine": "flite", "voice": "slt"},
        {"path": "a.wav", "text": "print 2 pages", "language": "en", "split": "test",
         "engine": "espeak-ng", "voice": "en-us"},
    ]  # fmt: skip
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    asr = ASR.from_pretrained(ctc_asr_dir)
    score = evaluate_timestamps(asr, speak, manifest).to_dict()
    assert spoken == ["en-us+f3"]  # flite's line is not re-spoken; the number is skipped
    assert score["utterances"] + score["refused"] == 1 and score["skipped"] == 1
    if score["utterances"]:
        assert score["overall"]["boundaries"] == 2 and score["overall"]["mae_ms"] >= 0


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_espeak_library_takes_the_corpus_voice_names():
    """The corpus names voices as the espeak-ng program takes them: ``fr-fr`` is a language,
    not a voice file, and the library must accept it (with a variant) as the program does."""
    from omnispeech.pipelines.espeak_speech import EspeakLibrary

    lib = EspeakLibrary()
    plain, words = lib.speak("il manque la section", "fr-fr")
    varied, _ = lib.speak("il manque la section", "fr-fr+m3")
    assert [w.text for w in words] == ["il", "manque", "la", "section"]
    assert len(plain) > 0 and len(varied) > 0
    assert [w.start for w in words] == sorted(w.start for w in words)
    with pytest.raises(InputError, match="no voice"):
        lib.speak("x", "xx-nowhere")
