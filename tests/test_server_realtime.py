"""Live transcription over the server's WebSocket: OpenAI realtime-style events in, deltas while
the audio streams, and a final text equal to ``ASR.transcribe`` of the same file."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the 'server' extra is not installed")
ws_client = pytest.importorskip("websockets.sync.client", reason="websockets is not installed")

from omnispeech.apps.models import Models  # noqa: E402
from omnispeech.apps.server import ServerConfig, create_app  # noqa: E402
from omnispeech.apps.server.app import BackgroundServer  # noqa: E402
from omnispeech.pipelines import ASR  # noqa: E402

SR = 16_000


@pytest.fixture(scope="module")
def asr(tiny_asr_dir) -> ASR:
    return ASR.from_pretrained(tiny_asr_dir)


@pytest.fixture(scope="module")
def server(asr, tmp_path_factory):
    config = ServerConfig(workers=1, voices_dir=tmp_path_factory.mktemp("voices"), api_key="k")
    with BackgroundServer(create_app(Models(asr=asr, asr_name="tiny-asr"), config)) as running:
        yield running


def _connect(server, key: str = "k"):
    url = server.url.replace("http://", "ws://") + "/v1/realtime"
    return ws_client.connect(url, additional_headers={"Authorization": f"Bearer {key}"})


def _pcm16_file(path, seconds: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    wav = (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32)
    sf.write(path, wav, SR, subtype="PCM_16")
    return sf.read(path, dtype="int16")[0].astype("<i2").tobytes()


def _events_until_done(ws) -> list[dict]:
    events = []
    while not events or events[-1]["type"] not in ("transcription.done", "error"):
        events.append(json.loads(ws.recv(timeout=120)))
    return events


def _append(ws, pcm: bytes, piece_ms: int = 100) -> None:
    step = 2 * SR * piece_ms // 1000
    for i in range(0, len(pcm), step):
        audio = base64.b64encode(pcm[i : i + step]).decode()
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))


def test_live_text_equals_offline_transcription(server, asr, tmp_path):
    pcm = _pcm16_file(tmp_path / "talk.wav", 9.3, seed=1)
    offline = asr.transcribe(tmp_path / "talk.wav")
    with _connect(server) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "transcription_session.created"
        _append(ws, pcm)
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        events = _events_until_done(ws)
    kinds = [e["type"] for e in events]
    # The first 8-s window became final while audio was still arriving: a delta before commit.
    assert kinds.index("transcription.delta") < kinds.index("input_audio_buffer.committed")
    done = events[-1]
    assert done["type"] == "transcription.done" and done["text"] == offline.text
    deltas = [e for e in events if e["type"] == "transcription.delta"]
    assert deltas[-1]["text"] == done["text"]
    assert done["usage"]["seconds"] == pytest.approx(9.3, abs=1e-3)


def test_bad_events_get_error_events_and_the_session_goes_on(server, asr, tmp_path):
    pcm = _pcm16_file(tmp_path / "short.wav", 1.5, seed=2)
    with _connect(server) as ws:
        ws.recv(timeout=30)
        for bad in ({"type": "input_audio_buffer.commit"}, {"type": "nonsense"}):
            ws.send(json.dumps(bad))
            assert json.loads(ws.recv(timeout=30))["type"] == "error"
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}))
        error = json.loads(ws.recv(timeout=30))
        assert error["type"] == "error" and "base64" in error["error"]["message"]
        ws.send("not json")
        assert json.loads(ws.recv(timeout=30))["type"] == "error"
        session = {"input_audio_transcription": {"language": "en"}}
        ws.send(json.dumps({"type": "transcription_session.update", "session": session}))
        assert json.loads(ws.recv(timeout=30))["type"] == "transcription_session.updated"
        _append(ws, pcm, piece_ms=250)
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        done = _events_until_done(ws)[-1]
    assert done["text"] == asr.transcribe(tmp_path / "short.wav", language="en").text
    workers = server.app.state.omnispeech.workers
    assert workers.busy == 0  # the utterance's worker went back at commit


def test_wrong_key_is_refused(server):
    with pytest.raises(Exception, match="403|rejected"):
        with _connect(server, key="wrong") as ws:
            ws.recv(timeout=10)
