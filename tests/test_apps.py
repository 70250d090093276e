"""The pieces under the demo and the server: which model is used when none is named, replicas
that share weights, audio bytes, saved voices, the demo's live transcription, and the one-line
errors of ``omnispeech demo`` / ``omnispeech serve`` without a model."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from omnispeech import registry
from omnispeech.apps.audio import decode_audio, decode_pcm16, encode_audio, pcm16, wav_header
from omnispeech.apps.models import Models, ReplicaPool, replicate
from omnispeech.apps.voices import VoiceNotFound, VoiceStore
from omnispeech.cli import main
from omnispeech.errors import AudioFileError, CheckpointError, EmptyAudioError, InputError
from omnispeech.pipelines import ASR, VoicePrompt


@pytest.fixture(scope="module")
def asr(tiny_asr_dir) -> ASR:
    return ASR.from_pretrained(tiny_asr_dir)


def test_model_lookup_order(monkeypatch, tmp_path):
    monkeypatch.delenv("OMNISPEECH_TTS_MODEL", raising=False)
    monkeypatch.setattr(registry, "BUNDLED", {})
    assert registry.find_model("tts") is None
    with pytest.raises(CheckpointError, match=r"pass --tts-model FOLDER or set \$OMNISPEECH"):
        registry.require_model("tts", option="--tts-model")
    # A bundled folder is used once it is installed ...
    monkeypatch.setattr(registry, "BUNDLED_ROOT", tmp_path)
    monkeypatch.setattr(registry, "BUNDLED", {"tts": "small-tts"})
    assert registry.find_model("tts") is None  # listed but not installed
    (tmp_path / "small-tts").mkdir()
    (tmp_path / "small-tts" / "config.json").write_text("{}")
    assert registry.find_model("tts") == str(tmp_path / "small-tts")
    # ... the environment comes before it, and an explicit name before both.
    monkeypatch.setenv("OMNISPEECH_TTS_MODEL", "/models/env-tts")
    assert registry.find_model("tts") == "/models/env-tts"
    assert registry.find_model("tts", "./mine") == "./mine"
    with pytest.raises(ValueError, match="kind"):
        registry.find_model("vocoder")


def test_commands_without_any_model_say_so_in_one_line(monkeypatch):
    for var in ("OMNISPEECH_TTS_MODEL", "OMNISPEECH_ASR_MODEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(registry, "BUNDLED", {})  # as installed without the bundled weights
    for command in ("serve", "demo"):
        result = CliRunner().invoke(main, [command])
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "no model to serve" in lines[0], result.output


def test_replicas_share_weights_not_state(asr):
    first, second = replicate(Models(asr=asr), 2)
    assert first.asr is asr and second.asr is not asr
    assert second.asr.decoder.embed_tokens.weight is asr.decoder.embed_tokens.weight
    assert second.asr.encoder is not asr.encoder  # its own modules, so its own stream state
    wav = (0.1 * np.random.default_rng(0).standard_normal(16_000)).astype(np.float32)
    # Two live streams at once, one per replica, each equal to offline transcription.
    with first.asr.stream(unfixed_tokens=None) as a, second.asr.stream(unfixed_tokens=None) as b:
        for i in range(0, 16_000, 4000):
            a.push(wav[i : i + 4000])
            b.push(wav[i : i + 4000])
        assert a.finish().text == b.finish().text == asr.transcribe(wav).text
    pool = ReplicaPool([first, second])
    with pool.borrow() as one, pool.borrow() as two:
        assert {id(one), id(two)} == {id(first), id(second)} and pool.busy == 2
        with pytest.raises(TimeoutError, match="busy"):
            pool.acquire(timeout=0.01)
    assert pool.busy == 0


def test_audio_bytes_round_trip():
    x = np.sin(np.arange(2400) / 7).astype(np.float32) * 0.5
    pcm = pcm16(x)
    assert np.abs(decode_pcm16(pcm) - x).max() < 1 / 16000
    stream = wav_header(24_000) + pcm  # sizes unknown, as when streamed
    for data in (stream, encode_audio(x, 24_000, "wav"), encode_audio(x, 24_000, "flac")):
        y, rate = sf.read(io.BytesIO(data), dtype="int16")
        assert rate == 24_000 and np.array_equal(y, np.frombuffer(pcm, "<i2"))
    resampled = decode_audio(encode_audio(x, 24_000, "wav"), 16_000)
    assert resampled.shape == (1600,)
    with pytest.raises(EmptyAudioError, match="0 bytes"):
        decode_audio(b"", 16_000, "a.wav")
    with pytest.raises(AudioFileError, match="a.txt: not an audio file"):
        decode_audio(b"hello there", 16_000, "a.txt")
    with pytest.raises(AudioFileError, match="even number"):
        decode_pcm16(b"abc")


def test_voice_store(tmp_path):
    store = VoiceStore(tmp_path)
    voice = VoicePrompt(
        speaker=torch.randn(8), ref_codes=torch.zeros(16, 3, dtype=torch.long), ref_text_ids=[5]
    )
    info = store.save("anna_1", voice, "the clip's words")
    assert info.in_context and store.names() == ["anna_1"] and "anna_1" in store
    back = store.load("anna_1")
    assert torch.equal(back.speaker, voice.speaker) and back.ref_text_ids == [5]
    assert store.list()[0].ref_text == "the clip's words"
    assert not list(tmp_path.glob("*.part"))  # written under a temporary name, then renamed
    for bad in ("../up", ".hidden", "a/b", "", "x" * 65):
        with pytest.raises(InputError, match="not allowed"):
            store.save(bad, voice)
    store.delete("anna_1")
    with pytest.raises(VoiceNotFound):
        store.load("anna_1")
    with pytest.raises(VoiceNotFound):
        store.delete("anna_1")


def test_demo_live_transcription_returns_its_worker(asr, tmp_path):
    from omnispeech.apps.demo.handlers import Handlers

    pool = ReplicaPool(replicate(Models(asr=asr), 1))
    handlers = Handlers(pool, VoiceStore(tmp_path), max_chars=100)
    rng = np.random.default_rng(1)
    mic = (3000 * rng.standard_normal(9 * 48_000)).astype(np.int16)  # 9 s at 48 kHz
    session, texts = None, []
    for i in range(0, len(mic), 24_000):  # what the page sends: half a second at a time
        session, text = handlers.live_push(session, (48_000, mic[i : i + 24_000]), "auto")
        texts.append(text)
        assert pool.busy == 1  # the session holds its worker between pieces
    assert texts[14] == "" and texts[-1] != ""  # an update once 8 s were heard
    session, final = handlers.live_finish(session)
    assert session is None and final and pool.busy == 0
    with pytest.raises(InputError, match="no TTS model"):
        next(handlers.speak(None, "", None, "Hello.", "auto", 1.0, -1))
