"""The OpenAI-compatible server, driven by the official ``openai`` client over real HTTP:
speech (whole and streamed) and transcription round trips, saved voices, 16 requests at once,
a client that leaves mid-stream, and every kind of bad input."""

from __future__ import annotations

import concurrent.futures
import io
import time
import warnings

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the 'server' extra is not installed")
openai = pytest.importorskip("openai", reason="the test extra's openai client is not installed")
httpx = pytest.importorskip("httpx")

from omnispeech.apps.models import Models  # noqa: E402
from omnispeech.apps.server import ServerConfig, create_app  # noqa: E402
from omnispeech.apps.server.app import BackgroundServer  # noqa: E402
from omnispeech.pipelines import ASR, TTS  # noqa: E402
from omnispeech.pipelines.tts_loop import GenerationWarning  # noqa: E402
from tests.tts_ref import tiny_tts  # noqa: E402

RATE = 24_000
SPEECH_SECONDS = 0.4  # the per-request cap keeps random-weight speech short (5 frames)


@pytest.fixture(autouse=True, scope="module")
def _quiet_guard():
    # Random weights seldom choose end-of-speech: the duration guard would end most utterances.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GenerationWarning)
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_asr_dir) -> Models:
    folder = tiny_tts(tmp_path_factory.mktemp("tts"))
    return Models(
        TTS.from_pretrained(folder), ASR.from_pretrained(tiny_asr_dir), "tiny-tts", "tiny-asr"
    )


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    config = ServerConfig(
        workers=2,
        max_body_bytes=1_000_000,
        max_speech_seconds=SPEECH_SECONDS,
        voices_dir=tmp_path_factory.mktemp("voices"),
    )
    app = create_app(models, config)
    with BackgroundServer(app) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def _workers(server):
    return server.app.state.omnispeech.workers


def _settled(server, timeout: float = 10.0):
    """The workers' counters once every lease is back: a response's last bytes can reach the
    client a moment before its worker is released."""
    deadline = time.monotonic() + timeout
    while True:
        stats = _workers(server).stats()
        if (stats.busy == 0 and stats.waiting == 0) or time.monotonic() > deadline:
            return stats
        time.sleep(0.01)


def _clip(seconds: float = 2.5) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    wav = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    buffer = io.BytesIO()
    sf.write(buffer, wav.astype(np.float32), RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_speech_then_transcription_round_trip(client, models, tmp_path):
    # Seeded: random weights pick end-of-speech now and then (a few % per frame), so unseeded
    # sampling would make the length depend on what ran before.
    wav = client.audio.speech.create(
        model="tiny-tts",
        voice="default",
        input="Hello there.",
        response_format="wav",
        extra_body={"seed": 7},
    ).content
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == RATE and len(samples) == int(SPEECH_SECONDS * RATE)
    assert np.abs(samples).max() > 0  # speech, not an empty stream
    text = client.audio.transcriptions.create(model="tiny-asr", file=("speech.wav", wav)).text
    (tmp_path / "speech.wav").write_bytes(wav)
    assert text == models.asr.transcribe(tmp_path / "speech.wav").text
    verbose = client.audio.transcriptions.create(
        model="tiny-asr",
        file=("speech.wav", wav),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert verbose.text == text and verbose.duration == pytest.approx(SPEECH_SECONDS, abs=1e-3)
    assert verbose.segments[0].end == verbose.duration
    assert verbose.words is None  # no CTC head to time words: segments only, not an error
    plain = client.audio.transcriptions.create(
        model="tiny-asr", file=("speech.wav", wav), response_format="text"
    )
    assert plain.strip() == text.strip()


def test_streamed_speech_equals_whole_speech(client):
    seed = {"seed": 7}
    whole = client.audio.speech.create(
        model="m", voice="default", input="Hi there.", response_format="pcm", extra_body=seed
    ).content
    pieces = []
    with client.audio.speech.with_streaming_response.create(
        model="m", voice="default", input="Hi there.", response_format="pcm", extra_body=seed
    ) as response:
        pieces.extend(response.iter_bytes(chunk_size=None))
    assert len(pieces) > 1  # the audio arrived while it was being made
    assert len(whole) == 2 * int(SPEECH_SECONDS * RATE)
    streamed = np.frombuffer(b"".join(pieces), dtype="<i2").astype(np.int32)
    samples = np.frombuffer(whole, dtype="<i2").astype(np.int32)
    # The same codes decoded in pushes and at once agree to float32 rounding (1e-5), which
    # now and then puts a sample on the other side of a 16-bit step.
    assert streamed.shape == samples.shape
    assert np.abs(streamed - samples).max() <= 1
    assert np.mean(streamed != samples) < 1e-3
    flac = client.audio.speech.create(
        model="m", voice="default", input="Hi there.", response_format="flac", extra_body=seed
    ).content
    lossless, _ = sf.read(io.BytesIO(flac), dtype="int16")
    assert np.array_equal(lossless, np.frombuffer(whole, dtype="<i2"))


def test_saved_voice_is_reused_by_name_and_deleted(client, server):
    http = httpx.Client(base_url=server.url)
    made = http.post(
        "/v1/audio/voices",
        data={"name": "anna", "ref_text": "a short clip"},
        files={"file": ("anna.wav", _clip())},
    )
    assert made.status_code == 201 and made.json()["in_context"] is True
    listed = [v["id"] for v in http.get("/v1/audio/voices").json()["data"]]
    assert listed == ["default", "anna"]
    seed = {"seed": 3}
    own = client.audio.speech.create(
        model="m", voice="anna", input="Hi.", response_format="pcm", extra_body=seed
    ).content
    default = client.audio.speech.create(
        model="m", voice="default", input="Hi.", response_format="pcm", extra_body=seed
    ).content
    assert own != default  # the saved voice conditions the speech
    assert http.delete("/v1/audio/voices/anna").status_code == 200
    with pytest.raises(openai.NotFoundError, match="unknown voice 'anna'"):
        client.audio.speech.create(model="m", voice="anna", input="Hi.")
    bad = http.post("/v1/audio/voices", data={"name": "../x"}, files={"file": ("a.wav", _clip())})
    assert bad.status_code == 400 and "not allowed" in bad.json()["error"]["message"]


def test_sixteen_concurrent_requests_are_all_answered(client, server):
    wav = client.audio.speech.create(model="m", voice="default", input="Hi.").content
    served = _settled(server).served

    def one(i: int):
        if i % 2:
            return client.audio.transcriptions.create(model="m", file=("a.wav", wav)).text
        return client.audio.speech.create(
            model="m",
            voice="default",
            input=f"Request {i}.",
            response_format="pcm",
            extra_body={"seed": i},  # seeded, so each runs to the cap (see the round trip)
        ).content

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(16)))
    texts = {a for a in answers[1::2]}
    assert len(texts) == 1  # the same audio gives the same text, whatever ran beside it
    assert all(len(a) == 2 * int(SPEECH_SECONDS * RATE) for a in answers[::2])
    stats = _settled(server)
    assert stats.served - served == 16 and stats.busy == 0 and stats.waiting == 0


def test_client_that_leaves_mid_stream_frees_its_worker(models, tmp_path):
    # A long allowance (30 s of speech, hundreds of frames): only leaving ends this early.
    config = ServerConfig(workers=1, max_speech_seconds=30.0, voices_dir=tmp_path)
    with BackgroundServer(create_app(models, config)) as server:
        workers = _workers(server)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            body = {"input": "Hello there, this will not be heard.", "response_format": "pcm"}
            with http.stream("POST", "/v1/audio/speech", json=body) as response:
                first = next(response.iter_bytes())
                assert first and workers.busy == 1
                left = time.perf_counter()
        # Closing the response closed the connection; the worker stops after its frame.
        while workers.busy and time.perf_counter() - left < 60:
            time.sleep(0.02)
        freed = time.perf_counter() - left
        stats = workers.stats()
        assert stats.busy == 0 and stats.stopped_early == 1, (stats, freed)
        print(f"worker freed {freed:.3f} s after the client left")
        # The freed worker serves the next request.
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert http.get("/v1/health").json()["busy"] == 0


def test_bad_input_gets_status_and_one_line(client, server):
    wav = _clip(1.0)
    cases = [
        (openai.BadRequestError, "not an audio file", lambda: _transcribe(client, b"hello")),
        (openai.BadRequestError, "empty", lambda: _transcribe(client, b"")),
        (openai.APIStatusError, "larger than the limit", lambda: _transcribe(client, wav * 30)),
        (openai.BadRequestError, "'input' is empty", lambda: _speak(client, input=" ")),
        (openai.NotFoundError, "unknown voice 'nobody'", lambda: _speak(client, voice="nobody")),
        (openai.BadRequestError, "not supported", lambda: _speak(client, response_format="mp3")),
        (openai.BadRequestError, "speed", lambda: _speak(client, speed=9.0)),
        (openai.BadRequestError, "unsupported language", lambda: _transcribe(client, wav, "xx")),
    ]
    for error, words, call in cases:
        with pytest.raises(error, match=words) as caught:
            call()
        body = caught.value.body
        assert set(body) >= {"message", "type"} and "\n" not in body["message"]
        if error is openai.APIStatusError:
            assert caught.value.status_code == 413
    assert _speak(client)  # and the server keeps serving


def test_api_key_is_checked_on_every_route(models, tmp_path):
    config = ServerConfig(workers=1, max_speech_seconds=0.1, voices_dir=tmp_path, api_key="k1")
    with BackgroundServer(create_app(models, config)) as server:
        url = server.url + "/v1"
        wrong = openai.OpenAI(base_url=url, api_key="k2", max_retries=0)
        with pytest.raises(openai.AuthenticationError, match="API key"):
            _speak(wrong)
        with pytest.raises(openai.AuthenticationError):
            _transcribe(wrong, _clip(1.0))
        for path in ("/v1/health", "/v1/audio/voices", "/v1/models"):
            assert httpx.get(server.url + path).status_code == 401
        right = openai.OpenAI(base_url=url, api_key="k1", max_retries=0)
        assert _speak(right) and [m.id for m in right.models.list()] == ["tiny-tts", "tiny-asr"]


def test_word_timestamps_come_from_the_models_ctc_head(models, tmp_path):
    import torch
    from fastapi.testclient import TestClient

    from omnispeech.apps.server.transcribe import can_time_words

    assert not can_time_words(models.asr)
    asr = ASR.__new__(ASR)
    asr.__dict__.update(models.asr.__dict__)  # the same modules, plus a CTC head
    asr.__dict__["_modules"] = dict(models.asr._modules)
    torch.manual_seed(0)
    asr.ctc_head = torch.nn.Linear(asr.encoder.out_dim, asr.decoder.cfg.vocab_size + 1)
    assert can_time_words(asr) and not can_time_words(models.asr)
    # Random weights say hundreds of tokens, more than 1 s has steps to time; a fixed short
    # transcript gives the head something to place.
    said = asr.tokenizer.encode("hello there", add_special_tokens=False).ids
    asr.__dict__["generate"] = lambda tokens, forced, context, budget: list(said)
    clip = _clip(1.0)
    wav, _ = sf.read(io.BytesIO(clip), dtype="float32")
    expected = asr.transcribe(wav, RATE, language="en", timestamps=True)
    app = create_app(Models(None, asr), ServerConfig(workers=1, voices_dir=tmp_path))
    with TestClient(app) as http:
        form = {
            "response_format": "verbose_json",
            "timestamp_granularities[]": "word",
            "language": "en",
        }
        answer = http.post("/v1/audio/transcriptions", data=form, files={"file": clip}).json()
        assert answer["text"] == expected.text == "hello there"
        words = answer["words"]
        assert [w["word"] for w in words] == [w.text for w in expected.words] == ["hello", "there"]
        assert [w["start"] for w in words] == [round(w.start, 3) for w in expected.words]
        assert all(0 <= w["start"] <= w["end"] <= answer["duration"] + 0.08 for w in words)
        refused = http.post("/v1/audio/speech", json={"input": "Hi."})
        assert refused.status_code == 503 and "--tts-model" in refused.json()["error"]["message"]


def _speak(client, **fields):
    request = {"model": "m", "voice": "default", "input": "Hi.", **fields}
    return client.audio.speech.create(**request).content


def _transcribe(client, data: bytes, language: str | None = None):
    extra = {} if language is None else {"language": language}
    return client.audio.transcriptions.create(model="m", file=("a.wav", data), **extra)
