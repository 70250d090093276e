"""The OpenAI-compatible speech server: configuration, app assembly, and running it.

Routes (all behind the API key when one is set):

- ``POST /v1/audio/speech``: text -> speech, streamed (:mod:`.speech`);
- ``GET/POST /v1/audio/voices``, ``DELETE /v1/audio/voices/{name}``: saved voices;
- ``POST /v1/audio/transcriptions``: file -> text (:mod:`.transcribe`);
- ``WS /v1/realtime``: live transcription (:mod:`.realtime`);
- ``GET /v1/models``, ``GET /v1/health``: what is loaded; worker counts.

Example::

    app = create_app(models, ServerConfig(workers=2, api_key="secret"))
    serve(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from omnispeech.apps.models import Models, replicate, require_extra
from omnispeech.apps.voices import VoiceStore

DEFAULT_VOICES_DIR = Path.home() / ".cache" / "omnispeech" / "voices"


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Limits and settings of the server.

    Attributes:
        workers: model replicas running requests at once (each a thread; weights shared).
        max_queue: requests that may wait for a worker; more get 503.
        max_body_bytes: largest request body (uploads included); larger gets 413.
        max_input_chars: longest text for ``/v1/audio/speech`` (OpenAI's limit is 4096).
        max_upload_seconds: longest audio to transcribe (file or live stream), in seconds.
        max_speech_seconds: most speech generated per request, in seconds (a runaway guard
            on top of the model's own duration guard).
        voices_dir: folder of saved voices.
        api_key: Bearer token required on every route; None: no check.
    """

    workers: int = 2
    max_queue: int = 64
    max_body_bytes: int = 25_000_000
    max_input_chars: int = 4096
    max_upload_seconds: float = 600.0
    max_speech_seconds: float = 300.0
    voices_dir: Path = DEFAULT_VOICES_DIR
    api_key: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1 or self.max_queue < 0:
            raise ValueError("workers must be >= 1 and max_queue >= 0")
        if min(self.max_body_bytes, self.max_input_chars) < 1:
            raise ValueError("max_body_bytes and max_input_chars must be positive")
        if min(self.max_upload_seconds, self.max_speech_seconds) <= 0:
            raise ValueError("max_upload_seconds and max_speech_seconds must be positive")


@dataclasses.dataclass
class ServerState:
    """What the routes share (``app.state.omnispeech``)."""

    config: ServerConfig
    workers: object  # omnispeech.apps.server.workers.Workers
    voices: VoiceStore


def create_app(models: Models, config: ServerConfig | None = None):
    """A FastAPI app serving ``models`` with ``config.workers`` weight-sharing replicas.

    Raises:
        DependencyError: the ``server`` extra (fastapi, uvicorn, python-multipart) is missing.
    """
    for module in ("fastapi", "uvicorn", "multipart"):
        require_extra(module, "server")
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from omnispeech import __version__
    from omnispeech.apps.server import realtime, speech, transcribe
    from omnispeech.apps.server.http import (
        ApiError,
        ApiKeyMiddleware,
        BodyLimitMiddleware,
        error_body,
        from_exception,
    )
    from omnispeech.apps.server.workers import Busy, Workers
    from omnispeech.errors import OmnispeechError

    config = config or ServerConfig()
    workers = Workers(replicate(models, config.workers), config.max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        workers.close()  # the worker threads end with the server

    app = FastAPI(
        title="omnispeech", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.omnispeech = ServerState(config, workers, VoiceStore(config.voices_dir))
    app.include_router(speech.router)
    app.include_router(transcribe.router)
    app.include_router(realtime.router)

    def reply(err: ApiError) -> JSONResponse:
        return JSONResponse(error_body(err.status, err.message, err.param), err.status)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return reply(exc)

    @app.exception_handler(OmnispeechError)
    async def _library_error(_: Request, exc: OmnispeechError):
        return reply(from_exception(exc))

    @app.exception_handler(Busy)
    async def _busy(_: Request, exc: Busy):
        return reply(ApiError(503, str(exc)))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return reply(ApiError(400, f"{where or 'request'}: {first.get('msg', 'invalid')}", where))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException):
        return reply(ApiError(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        return reply(from_exception(exc))

    @app.get("/v1/models")
    async def list_models():
        loaded = workers.models
        names = [n for n, m in ((loaded.tts_name, loaded.tts), (loaded.asr_name, loaded.asr)) if m]
        data = [{"id": n, "object": "model", "owned_by": "omnispeech"} for n in names]
        return {"object": "list", "data": data}

    @app.get("/v1/health")
    async def health():
        stats = dataclasses.asdict(workers.stats())
        loaded = workers.models
        return {
            "status": "ok",
            "tts": loaded.tts is not None,
            "asr": loaded.asr is not None,
            **stats,
        }

    # Outermost first: the key is checked before the body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, api_key=config.api_key)
    return app


def serve(app, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run ``app`` with uvicorn until interrupted (WebSocket frames limited like bodies)."""
    import uvicorn

    limit = app.state.omnispeech.config.max_body_bytes
    uvicorn.run(app, host=host, port=port, log_level=log_level, ws_max_size=limit)


class BackgroundServer:
    """Run ``app`` in a background thread on ``host`` and a free port, for the length of a
    ``with`` block (tests, benchmarks, notebooks)::

        with BackgroundServer(create_app(models)) as server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="-")

    Args:
        app: from :func:`create_app`.
        host: address to bind; loopback by default so nothing outside the machine can reach it.
        port: 0 picks a free port.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0) -> None:
        import socket

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.app, self.host, self.port = app, host, port
        self.url = f"http://{host}:{port}"
        self._server = None
        self._thread = None

    def __enter__(self) -> BackgroundServer:
        import threading
        import time

        import uvicorn

        limit = self.app.state.omnispeech.config.max_body_bytes
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", ws_max_size=limit
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
