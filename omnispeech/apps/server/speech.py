"""``POST /v1/audio/speech`` and the saved voices ``/v1/audio/voices``.

Speech is streamed as it is made: ``TTS.stream`` yields a chunk per codec frame (80 ms of
audio at 12.5 Hz), each chunk goes out as soon as the worker thread has it, and a client that
closes the connection stops generation after the frame in progress.

Voices: ``voice`` names a saved voice (uploaded once with ``POST /v1/audio/voices``), a
built-in speaker of the model (CustomVoice models), or ``default`` (the model's own voice, no
cloning). Anything else is a 404 that lists the voices there are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import numpy as np
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from omnispeech.apps.audio import (
    FORMATS,
    MEDIA_TYPES,
    decode_audio,
    encode_audio,
    pcm16,
    wav_header,
)
from omnispeech.apps.models import Models
from omnispeech.apps.server.http import ApiError, check_text, log
from omnispeech.apps.voices import VoiceInfo, VoiceNotFound, check_name

if TYPE_CHECKING:
    from omnispeech.apps.server.app import ServerState
    from omnispeech.pipelines import VoicePrompt

router = APIRouter()

DEFAULT_VOICE = "default"


class SpeechRequest(BaseModel):
    """The JSON body of ``/v1/audio/speech`` (OpenAI's fields, plus ``language`` and
    ``seed``, which OpenAI clients pass through ``extra_body``)."""

    model_config = ConfigDict(extra="ignore")

    input: Any = None
    model: str | None = None
    voice: Any = DEFAULT_VOICE
    response_format: str = "wav"
    speed: float = 1.0
    instructions: str | None = None
    stream_format: str | None = None
    language: str = "auto"
    seed: int | None = None


class AudioStream(StreamingResponse):
    """A streamed body that always closes its iterator, and notices a client that leaves
    while no chunk is being sent (e.g. during a long first frame), not only at the next send.
    """

    async def __call__(self, scope, receive, send) -> None:
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()

            group.start_soon(watch)
            try:
                await self.stream_response(send)
            except OSError:
                pass  # the client went away mid-send
            finally:
                with anyio.CancelScope(shield=True):
                    await self.body_iterator.aclose()
                group.cancel_scope.cancel()


def state_of(request: Request) -> ServerState:
    return request.app.state.omnispeech


def _need_tts(state: ServerState) -> None:
    if state.workers.models.tts is None:
        raise ApiError(503, "this server has no TTS model: start it with --tts-model FOLDER")


def voice_names(state: ServerState) -> list[str]:
    """Every name ``voice`` accepts."""
    tts = state.workers.models.tts
    speakers = tts.speakers if tts is not None else []
    return [DEFAULT_VOICE, *speakers, *state.voices.names()]


def resolve_voice(state: ServerState, voice: Any) -> VoicePrompt | None:
    """The prompt for a ``voice`` field: None (default), a built-in speaker or a saved voice.

    Raises:
        ApiError: 404 for a name that is none of these.
    """
    from omnispeech.pipelines import VoicePrompt

    if isinstance(voice, dict):  # newer clients send {"id": name}
        voice = voice.get("id")
    if voice is None or voice == "" or voice == DEFAULT_VOICE:
        return None
    if not isinstance(voice, str):
        raise ApiError(400, "'voice' must be a voice name", "voice")
    tts = state.workers.models.tts
    if tts is not None and voice.lower() in tts.speakers:
        return VoicePrompt(speaker_id=voice.lower())
    if voice in state.voices:
        return state.voices.load(voice)
    known = ", ".join(voice_names(state))
    raise ApiError(404, f"unknown voice {voice!r}; voices here: {known}", "voice")


def _speech_job(req: SpeechRequest, text: str, voice: VoicePrompt | None, limit_s: float):
    """The worker's generator: float chunks ``[n]`` at 24 kHz, cut at ``limit_s`` seconds."""

    def job(models: Models) -> Iterator[np.ndarray]:
        tts = models.tts
        chunks = tts.stream(
            text,
            voice,
            language=req.language,
            seed=req.seed,
            speed=req.speed,
            instruct=req.instructions,
        )
        left = int(limit_s * tts.sample_rate)
        try:
            for chunk in chunks:
                if len(chunk) >= left:
                    yield chunk[:left]
                    return  # the per-request limit on generated speech
                left -= len(chunk)
                yield chunk
        finally:
            chunks.close()

    return job


@router.post("/v1/audio/speech")
async def speech(req: SpeechRequest, request: Request):
    """Text -> speech, streamed as ``wav`` / ``pcm`` (or ``flac`` once complete)."""
    state = state_of(request)
    _need_tts(state)
    text = check_text(req.input, state.config.max_input_chars)
    fmt = req.response_format.lower()
    if fmt not in FORMATS:
        raise ApiError(
            400,
            f"response_format {req.response_format!r} is not supported; use one of "
            f"{', '.join(FORMATS)}",
            "response_format",
        )
    if req.stream_format not in (None, "audio"):
        raise ApiError(400, "only stream_format 'audio' (raw audio bytes) is supported")
    if not 0.25 <= req.speed <= 4.0:
        raise ApiError(400, f"speed must be between 0.25 and 4, got {req.speed}", "speed")
    voice = resolve_voice(state, req.voice)
    rate = state.workers.models.tts.sample_rate
    lease = await state.workers.lease()
    chunks = lease.stream(_speech_job(req, text, voice, state.config.max_speech_seconds))
    try:
        # The first chunk is awaited here so that bad options become a 400, not a cut stream.
        first = await chunks.__anext__()
    except StopAsyncIteration:
        raise ApiError(400, "no speech was generated: the text is empty", "input") from None
    except BaseException:
        await chunks.aclose()
        raise
    if fmt == "flac":
        parts = [first]
        async for chunk in chunks:
            parts.append(chunk)
        return _bytes_response(encode_audio(np.concatenate(parts), rate, "flac"), fmt)
    head = wav_header(rate) if fmt == "wav" else b""
    return AudioStream(_body(head, first, chunks), media_type=MEDIA_TYPES[fmt])


async def _body(head: bytes, first: np.ndarray, rest: AsyncIterator[np.ndarray]):
    try:
        yield head + pcm16(first)
        async for chunk in rest:
            yield pcm16(chunk)
    except Exception:  # after the headers went out, the stream can only end early
        log.exception("speech stream failed after its first chunk")
    finally:
        await rest.aclose()


def _bytes_response(data: bytes, fmt: str):
    from fastapi.responses import Response

    return Response(data, media_type=MEDIA_TYPES[fmt])


# -- voices ------------------------------------------------------------------------------------
def _voice_json(info: VoiceInfo) -> dict:
    return {
        "id": info.name,
        "object": "voice",
        "name": info.name,
        "type": "saved",
        "created_at": info.created_at,
        "in_context": info.in_context,
        "ref_text": info.ref_text,
    }


@router.get("/v1/audio/voices")
async def list_voices(request: Request):
    """Every voice ``/v1/audio/speech`` accepts: default, built-in speakers, saved voices."""
    state = state_of(request)
    tts = state.workers.models.tts
    data = [{"id": DEFAULT_VOICE, "object": "voice", "name": DEFAULT_VOICE, "type": "builtin"}]
    for name in tts.speakers if tts is not None else []:
        data.append({"id": name, "object": "voice", "name": name, "type": "builtin"})
    data += [_voice_json(v) for v in state.voices.list()]
    return {"object": "list", "data": data}


@router.post("/v1/audio/voices")
async def create_voice(
    request: Request,
    name: Annotated[str, Form()],
    file: Annotated[UploadFile, File()],
    ref_text: Annotated[str | None, Form()] = None,
):
    """Save a voice from a reference clip (1-30 s). With ``ref_text`` (the clip's transcript)
    the voice clones in context, the closest imitation."""
    state = state_of(request)
    _need_tts(state)
    check_name(name)
    if name == DEFAULT_VOICE or name.lower() in state.workers.models.tts.speakers:
        raise ApiError(400, f"{name!r} is a built-in voice; choose another name", "name")
    data = await file.read()
    rate = state.workers.models.tts.sample_rate
    clip = decode_audio(data, rate, file.filename or "file")
    text = ref_text.strip() if ref_text and ref_text.strip() else None
    voice = await state.workers.run(lambda m: m.tts.voice(clip, text, sample_rate=rate))
    info = state.voices.save(name, voice, text)
    return JSONResponse(_voice_json(info), status_code=201)


@router.delete("/v1/audio/voices/{name}")
async def delete_voice(name: str, request: Request):
    """Remove a saved voice."""
    state = state_of(request)
    try:
        state.voices.delete(name)
    except VoiceNotFound as exc:
        raise ApiError(404, str(exc), "name") from None
    return {"id": name, "object": "voice", "deleted": True}
