"""Live transcription over a WebSocket at ``/v1/realtime``, in the shape of OpenAI's realtime
transcription events.

Client events (JSON text frames):

- ``transcription_session.update`` (or ``session.update``) with
  ``{"session": {"input_audio_transcription": {"language": "en", "prompt": "..."}}}``;
- ``input_audio_buffer.append`` with ``{"audio": base64 PCM16, 16 kHz, mono}``;
- ``input_audio_buffer.commit``: the utterance is complete; ``input_audio_buffer.clear``
  drops it.

Server events: ``transcription_session.created`` / ``.updated``,
``input_audio_buffer.committed``, ``transcription.delta`` (``delta``: new text; ``text``: the
whole transcript so far) as the streaming encoder finalises audio (every 8 s window), then
``transcription.done`` (``text``) after a commit, and ``error`` for a bad event (the session
stays open).

An utterance holds one worker from its first audio to its commit: the streaming encoder and
the decoder cache live in that worker's modules. The final text equals ``ASR.transcribe`` of
the same audio (the stream re-decodes the whole answer at each update: ``unfixed_tokens=None``).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from omnispeech.apps.audio import decode_pcm16
from omnispeech.apps.server.http import ApiError, from_exception
from omnispeech.apps.server.workers import Busy, Lease
from omnispeech.errors import OmnispeechError

if TYPE_CHECKING:
    from omnispeech.apps.server.app import ServerState
    from omnispeech.pipelines import ASRStream

router = APIRouter()

SAMPLE_RATE = 16_000
_ids = itertools.count(1)


class _Session:
    """One connection: its settings and the utterance in progress."""

    def __init__(self, ws: WebSocket, state: ServerState) -> None:
        self.ws = ws
        self.state = state
        self.language: str | None = None
        self.context = ""
        self.lease: Lease | None = None
        self.live: ASRStream | None = None
        self.sent = ""  # the transcript already sent as deltas
        self.item_id = ""

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(event))

    async def error(self, message: str, kind: str = "invalid_request_error") -> None:
        await self.send({"type": "error", "error": {"type": kind, "message": message}})

    def session_json(self) -> dict:
        return {
            "object": "realtime.transcription_session",
            "input_audio_format": "pcm16",
            "input_audio_transcription": {"language": self.language, "prompt": self.context},
        }

    # -- events -----------------------------------------------------------------------------
    async def update(self, event: dict) -> None:
        settings = (event.get("session") or {}).get("input_audio_transcription") or {}
        if self.live is not None:
            raise ApiError(400, "commit or clear the audio before changing the session")
        language = settings.get("language")
        self.language = None if language in (None, "", "auto") else str(language)
        self.context = str(settings.get("prompt") or "")
        await self.send({"type": "transcription_session.updated", "session": self.session_json()})

    async def append(self, event: dict) -> None:
        try:
            pcm = base64.b64decode(event.get("audio") or "", validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "'audio' must be base64 PCM16 (16 kHz mono)", "audio") from None
        samples = decode_pcm16(pcm)
        if self.live is None:
            await self._open()
        update = await self.lease.run(lambda _: self.live.push(samples))
        if update is not None:
            await self._delta(update.text)

    async def commit(self) -> None:
        if self.live is None:
            raise ApiError(400, "the audio buffer is empty: append audio before committing")
        await self.send({"type": "input_audio_buffer.committed", "item_id": self.item_id})
        live, item_id = self.live, self.item_id
        try:
            final = await self.lease.run(lambda _: live.finish())
        finally:
            await self._close()
        await self._delta(final.text, item_id)
        await self.send(
            {
                "type": "transcription.done",
                "item_id": item_id,
                "text": final.text,
                "language": final.language,
                "usage": {"type": "duration", "seconds": round(final.seconds, 3)},
            }
        )

    async def clear(self) -> None:
        await self._close()
        await self.send({"type": "input_audio_buffer.cleared"})

    # -- the utterance ----------------------------------------------------------------------
    async def _open(self) -> None:
        if self.state.workers.models.asr is None:
            raise ApiError(503, "this server has no ASR model: start it with --asr-model FOLDER")
        self.lease = await self.state.workers.lease()
        seconds = self.state.config.max_upload_seconds
        language, context = self.language, self.context

        def start(models):
            live = models.asr.stream(language, context, unfixed_tokens=None, max_seconds=seconds)
            return live.__enter__()

        try:
            self.live = await self.lease.run(start)
        except BaseException:
            self.lease.release()
            self.lease = None
            raise
        self.item_id = f"item_{next(_ids)}"
        self.sent = ""

    async def _delta(self, text: str, item_id: str | None = None) -> None:
        # Deltas only ever append; if the model revised earlier words, the next delta starts
        # from the common prefix and `text` carries the whole transcript.
        common = 0
        for a, b in zip(self.sent, text, strict=False):
            if a != b:
                break
            common += 1
        if text == self.sent:
            return
        self.sent = text
        await self.send(
            {
                "type": "transcription.delta",
                "item_id": item_id or self.item_id,
                "delta": text[common:],
                "text": text,
            }
        )

    async def _close(self) -> None:
        live, lease = self.live, self.lease
        self.live, self.lease = None, None
        if lease is None:
            return
        try:
            if live is not None:
                await lease.run(lambda _: live.__exit__(None, None, None))
        finally:
            lease.release()


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket) -> None:
    """Live transcription: append PCM16 audio, commit, read deltas and the final text."""
    state: ServerState = ws.app.state.omnispeech
    offered = ws.headers.get("sec-websocket-protocol", "")
    # Echo the protocol the client offered (a browser drops a connection that gets none).
    subprotocol = "realtime" if "realtime" in [p.strip() for p in offered.split(",")] else None
    await ws.accept(subprotocol=subprotocol)
    session = _Session(ws, state)
    handlers = {
        "transcription_session.update": session.update,
        "session.update": session.update,
        "input_audio_buffer.append": session.append,
        "input_audio_buffer.commit": lambda _: session.commit(),
        "input_audio_buffer.clear": lambda _: session.clear(),
    }
    await session.send({"type": "transcription_session.created", "session": session.session_json()})
    try:
        while True:
            raw = await ws.receive_text()
            try:
                event = json.loads(raw)
                handler = handlers.get(event.get("type")) if isinstance(event, dict) else None
                if handler is None:
                    kind = event.get("type") if isinstance(event, dict) else None
                    raise ApiError(400, f"unknown event type {kind!r}")
                await handler(event)
            except json.JSONDecodeError:
                await session.error("events must be JSON objects")
            except Busy as exc:
                await session.error(str(exc), "server_busy")
            except (ApiError, OmnispeechError) as exc:
                err = from_exception(exc)
                await session.error(err.message, err.type)
    except WebSocketDisconnect:
        pass
    finally:
        await session._close()
