"""The Gradio demo in a real headless browser (Debian's Chromium driven by Playwright): a clip
is uploaded, its transcript filled in by ASR, text typed, the button pressed, and the page's
audio player receives playable speech; oversized uploads and unusable clips show one error line
and the page keeps working; a voice is saved and reused; a file is transcribed."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(
        "needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; .ci/run "
        "installs it)",
        allow_module_level=True,
    )
pytest.importorskip("gradio", reason="the 'demo' extra is not installed")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from omnispeech.apps.demo import DemoConfig, build_demo, launch  # noqa: E402
from omnispeech.apps.models import Models  # noqa: E402
from omnispeech.pipelines import ASR, TTS  # noqa: E402
from omnispeech.pipelines.tts_loop import GenerationWarning  # noqa: E402
from tests.tts_ref import tiny_tts  # noqa: E402

# Gradio's queue calls pandas options that pandas 3 deprecates; nothing here to act on.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

RATE = 24_000
MAX_FILE_BYTES = 200_000  # about 4 s of 16-bit 24 kHz audio
TIMEOUT_MS = 120_000  # generous: the machine is shared


@pytest.fixture(autouse=True, scope="module")
def _quiet_guard():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GenerationWarning)
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_asr_dir) -> Models:
    folder = tiny_tts(tmp_path_factory.mktemp("tts"))
    return Models(TTS.from_pretrained(folder), ASR.from_pretrained(tiny_asr_dir), "tts", "asr")


@pytest.fixture(scope="module")
def url(models, tmp_path_factory):
    config = DemoConfig(
        workers=1,
        max_file_bytes=MAX_FILE_BYTES,
        max_speech_seconds=0.5,  # random weights never stop by themselves
        voices_dir=tmp_path_factory.mktemp("voices"),
    )
    page = build_demo(models, config)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(page, config, host="127.0.0.1", port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    page.close()


@pytest.fixture(scope="module")
def microphone(tmp_path_factory) -> Path:
    """What the browser's fake microphone hears: 12 s of noise at 48 kHz."""
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    noise = 0.1 * np.random.default_rng(0).standard_normal(12 * 48_000)
    sf.write(path, noise.astype(np.float32), 48_000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(microphone):
    with playwright.sync_playwright() as p:
        args = [
            "--no-sandbox",  # needed as root
            "--autoplay-policy=no-user-gesture-required",  # the player may start by itself
            # A microphone that plays a file, granted without a permission prompt.
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}",
        ]
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, url):
    tab = browser.new_context(permissions=["microphone"]).new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.goto(url, wait_until="load")
    tab.wait_for_selector("#speak")
    yield tab
    tab.context.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    out = {}
    for name, seconds in (("good", 2.5), ("short", 0.5), ("big", 6.0)):
        t = np.arange(int(seconds * RATE)) / RATE
        wav = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        out[name] = folder / f"{name}.wav"
        sf.write(out[name], wav.astype(np.float32), RATE, subtype="PCM_16")
    assert out["big"].stat().st_size > MAX_FILE_BYTES > out["good"].stat().st_size
    return out


def _upload(page, path: Path) -> None:
    clear = page.locator("#ref-clip button[aria-label='Clear']")
    if clear.count():
        clear.click()
    page.locator("#ref-clip input[type=file]").set_input_files(str(path))


def _speak_and_wait(page, text: str) -> str:
    page.locator("#text textarea").fill(text)
    before = page.locator("#status").inner_text()
    page.locator("#speak").click()
    page.wait_for_function(
        "before => { const s = document.querySelector('#status').innerText;"
        " return s !== before && s.includes('seed'); }",
        arg=before,
    )
    return page.locator("#status").inner_text()


def _player(page) -> dict:
    """Wait until the page's speech player can play, and describe it."""
    page.wait_for_function(
        "() => { const a = document.querySelector('#speech audio');"
        " return a && a.readyState >= 2 && a.duration > 0; }"
    )
    return page.evaluate(
        "() => { const a = document.querySelector('#speech audio');"
        " return {src: a.src, duration: a.duration, error: a.error && a.error.code}; }"
    )


def test_clip_text_button_gives_playable_speech(page, clips, models):
    _upload(page, clips["good"])
    # The transcript box is filled by speech recognition of the clip.
    box = page.locator("#ref-text textarea")
    page.wait_for_function("() => document.querySelector('#ref-text textarea').value !== ''")
    wav = models.asr.transcribe(sf.read(clips["good"], dtype="float32")[0], RATE)
    assert box.input_value() == wav.text
    status = _speak_and_wait(page, "Hello there.")
    assert status.startswith("0.50 s of speech")
    player = _player(page)
    assert player["error"] is None and player["src"]
    assert player["duration"] == pytest.approx(0.5, abs=0.1)  # as encoded for the browser


def test_errors_are_one_line_and_the_page_keeps_working(page, clips):
    _upload(page, clips["big"])
    toast = page.locator(".toast-body").filter(has_text="exceed the maximum allowed size")
    toast.wait_for()
    _upload(page, clips["short"])
    page.locator("#text textarea").fill("Hello.")
    page.locator("#speak").click()
    page.locator(".toast-body").filter(has_text="reference audio too short").wait_for()
    # The same page then does its job.
    _upload(page, clips["good"])
    assert "s of speech" in _speak_and_wait(page, "Hello again.")
    assert _player(page)["error"] is None


def test_saved_voice_and_file_transcription(page, clips, models, tmp_path):
    _upload(page, clips["good"])
    page.locator("#voice-name input, #voice-name textarea").first.fill("anna")
    page.locator("#save-voice").click()
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('anna')")
    assert "saved voice 'anna'" in page.locator("#status").inner_text()
    page.get_by_role("tab", name="Transcribe").click()
    page.locator("#asr-file input[type=file]").set_input_files(str(clips["good"]))
    page.locator("#transcribe").click()
    page.wait_for_function("() => document.querySelector('#transcript textarea').value !== ''")
    want = models.asr.transcribe_file(clips["good"]).text
    assert page.locator("#transcript textarea").input_value() == want


def test_microphone_is_transcribed_while_it_records(page):
    page.get_by_role("tab", name="Transcribe").click()
    page.get_by_role("button", name="Record", exact=True).click()
    # The text appears during the recording, once the encoder has a final 8-s window.
    page.wait_for_function("() => document.querySelector('#live-transcript textarea').value !== ''")
    page.get_by_role("button", name="Stop").last.click()
    # Stopping gives the worker back (there is one): the other tab can speak again.
    page.get_by_role("tab", name="Clone a voice").click()
    assert "s of speech" in _speak_and_wait(page, "Still here.")
