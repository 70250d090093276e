"""Text in a writing system its language is not read from is refused, in one line, before
espeak-ng spells it out as letter names; Latin, digits and symbols pass in every language."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from omnispeech.cli import main
from omnispeech.errors import LanguageError
from omnispeech.pipelines import TTS
from omnispeech.pipelines.languages import LANGUAGE_NAMES
from omnispeech.pipelines.scripts import SCRIPTS, check_script, script_of
from omnispeech.pipelines.tts_frontend import PhonemeFrontend
from omnispeech.pipelines.tts_text import SEGMENT_END
from tests.tts_ref import needs_espeak, tiny_tts


@pytest.mark.parametrize(
    ("char", "script"),
    [
        ("a", "Latin"), ("ß", "Latin"), ("Ａ", "Latin"), ("я", "Cyrillic"), ("λ", "Greek"),
        ("你", "Han"), ("の", "Hiragana"), ("ｶ", "Katakana"), ("한", "Hangul"), ("ש", "Hebrew"),
        ("ب", "Arabic"), ("क", "Devanagari"), ("ა", "Georgian"), ("ก", "Thai"),
        ("7", None), ("?", None), ("\u0301", None), ("ー", None), ("€", None),
    ],
)  # fmt: skip
def test_script_of_a_character(char, script):
    assert script_of(char) == script


def test_every_known_language_reads_latin_and_its_own_script():
    assert set(SCRIPTS) == set(LANGUAGE_NAMES)
    assert all("Latin" in s for s in SCRIPTS.values())
    assert SCRIPTS["en"] == {"Latin"}
    assert SCRIPTS["ru"] == {"Latin", "Cyrillic"}
    assert SCRIPTS["ja"] == {"Latin", "Han", "Hiragana", "Katakana"}


@pytest.mark.parametrize(
    ("text", "language", "word", "script", "suggested"),
    [
        ("Say 你好 now", "en", "你好", "Han", "zh"),
        ("Привет, мир", "de", "Привет,", "Cyrillic", "ru"),
        ("Hola καλημέρα", "es", "καλημέρα", "Greek", "el"),
        ("Привет こんにちは", "ru", "こんにちは", "Hiragana", "ja"),
    ],
)
def test_a_foreign_script_is_refused_naming_the_word_and_a_language(
    text, language, word, script, suggested
):
    with pytest.raises(LanguageError) as err:
        check_script(text, language)
    message = str(err.value)
    assert "\n" not in message
    assert repr(word) in message and f"{script} script" in message
    assert f"e.g. {suggested} ({LANGUAGE_NAMES[suggested]})" in message


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Dr. Müller paid €42 at 9:30, naïve café!", "de"),
        ("Apple и Google, 2024 год.", "ru"),  # brand names in Latin inside Russian
        ("東京へ行きます。カメラ", "ja"),
        ("你好, iPhone 15", "zh"),
        ("ʔaʊ ˈhɛloʊ", "en"),  # IPA letters are Latin-script extensions
        ("任何 text", "xx"),  # a code this module does not know is not checked
    ],
)
def test_text_in_the_languages_own_scripts_passes(text, language):
    check_script(text, language)


@needs_espeak
def test_the_phoneme_front_end_refuses_whole_and_streamed_text():
    fe = PhonemeFrontend()
    with pytest.raises(LanguageError, match="Han script"):
        fe.encode("你好", "auto")  # auto reads the default language, English
    assert fe.encode("你好", "zh")  # Mandarin's own voice reads it
    feed = fe.feed(50, "english")
    feed.add("Hello there. Пр")  # the first clause is complete once the next one starts
    got: list[int] = []
    while (item := feed.take()) and item is not SEGMENT_END:
        got.extend(item)
    assert got == fe.encode("Hello there.", "en")
    with pytest.raises(LanguageError, match="'Привет,' is written in Cyrillic script"):
        feed.add("ивет, мир. Bye.")
        feed.finish()


@needs_espeak
def test_a_whole_text_is_refused_before_any_speech(tmp_path):
    tts = TTS.from_pretrained(tiny_tts(tmp_path / "phonemes", phonemes=True))
    text = "Hello there. " * 4 + "Then 你好."
    # Refused when the request is made, not after four sentences of audio.
    with pytest.raises(LanguageError, match="'你好.' is written in Han script"):
        tts.stream(text, language="en", seed=0)
    with pytest.raises(LanguageError, match="Han script"):
        tts.codes_batch(["Hi.", text], seeds=[0, 1], language="en")
    # Byte-level BPE reads every script: a released model's front end refuses nothing.
    bpe = TTS.from_pretrained(tiny_tts(tmp_path / "bpe"))
    bpe.frontend.check_text(text, "en")


@needs_espeak
def test_cli_says_in_one_line_which_language_to_choose(tmp_path):
    out = tmp_path / "x.wav"
    result = CliRunner().invoke(main, ["tts", "你好", "-o", str(out)])
    assert result.exit_code != 0 and not out.exists()
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: '你好' is written in Han script")
    assert "zh (Chinese)" in lines[0]
