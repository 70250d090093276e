"""``POST /v1/audio/transcriptions``: an uploaded file -> text, in OpenAI's response formats.

``response_format``: ``json`` ({"text"}), ``text``, ``verbose_json`` (language, duration,
segments, and words when the model can time them), ``srt`` and ``vtt``.

Word timestamps come from the model's CTC head (``ASR.transcribe(timestamps=True)``): with
``timestamp_granularities[]=word``, ``verbose_json`` lists each word's start and end seconds.
A model without that head (the released Qwen checkpoints) gives the segments without ``words``
rather than failing the request: the transcript is still what was asked for.
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse

from omnispeech.apps.audio import decode_audio
from omnispeech.apps.models import Models
from omnispeech.apps.server.http import ApiError

if TYPE_CHECKING:
    from omnispeech.apps.server.app import ServerState

router = APIRouter()

SAMPLE_RATE = 16_000
RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
# Up to this length a file is one utterance (ASR.transcribe); longer files are cut into
# segments at quiet points (ASR.transcribe_file), as the command line does.
ONE_PASS_SECONDS = 30.0


def can_time_words(asr: Any) -> bool:
    """Whether the ASR model places words in time (it has a CTC head on its encoder)."""
    return getattr(asr, "ctc_head", None) is not None


def _transcribe_job(wav: np.ndarray, language: str | None, context: str, want_words: bool):
    """The worker's job: ``(text, language, token_ids, words or None)``."""

    def job(models: Models) -> tuple[str, str | None, tuple[int, ...], list[dict] | None]:
        asr = models.asr
        if not np.any(wav):
            return "", language, (), [] if want_words else None  # silence says nothing
        timed = want_words and can_time_words(asr)
        options = {"language": language, "context": context, "timestamps": timed}
        if len(wav) <= ONE_PASS_SECONDS * SAMPLE_RATE:
            result = asr.transcribe(wav, SAMPLE_RATE, **options)
        else:
            from omnispeech.audio import save_audio

            with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
                save_audio(tmp.name, wav, SAMPLE_RATE, subtype="FLOAT")
                result = asr.transcribe_file(tmp.name, **options)
        words = None
        if timed:
            words = [
                {"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3)}
                for w in result.words
            ]
        return result.text, result.language, result.token_ids, words

    return job


def _timestamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


@router.post("/v1/audio/transcriptions")
async def transcriptions(  # noqa: PLR0913 - the form fields of the OpenAI route
    request: Request,
    file: Annotated[UploadFile | None, File()] = None,
    model: Annotated[str | None, Form()] = None,
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[str, Form()] = "json",
    granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
):
    """Transcribe one uploaded audio file (wav, flac, ogg; any rate and channel count)."""
    state: ServerState = request.app.state.omnispeech
    if state.workers.models.asr is None:
        raise ApiError(503, "this server has no ASR model: start it with --asr-model FOLDER")
    if file is None:
        raise ApiError(400, "no 'file' in the form: upload the audio as 'file'", "file")
    fmt = response_format.lower()
    if fmt not in RESPONSE_FORMATS:
        raise ApiError(
            400,
            f"response_format {response_format!r} is not supported; use one of "
            f"{', '.join(RESPONSE_FORMATS)}",
            "response_format",
        )
    data = await file.read()
    wav = decode_audio(data, SAMPLE_RATE, file.filename or "file")
    seconds = len(wav) / SAMPLE_RATE
    limit = state.config.max_upload_seconds
    if seconds > limit:
        raise ApiError(400, f"the audio is {seconds:.0f} s long; the limit is {limit:g} s", "file")
    want_words = "word" in (granularities or [])
    lang = None if language in (None, "", "auto") else language
    job = _transcribe_job(wav, lang, prompt or "", want_words)
    text, found, ids, words = await state.workers.run(job)
    if fmt == "text":
        return PlainTextResponse(text + "\n")
    if fmt in ("srt", "vtt"):
        sep = "," if fmt == "srt" else "."
        cue = f"{_timestamp(0, sep)} --> {_timestamp(seconds, sep)}\n{text}\n"
        return PlainTextResponse(("1\n" + cue) if fmt == "srt" else ("WEBVTT\n\n" + cue))
    if fmt == "json":
        return {"text": text}
    segment = {
        "id": 0,
        "seek": 0,
        "start": 0.0,
        "end": round(seconds, 3),
        "text": text,
        "tokens": list(ids),
        "temperature": 0.0,
    }
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": (found or "").lower(),
        "duration": round(seconds, 3),
        "text": text,
        "segments": [segment] if text else [],
    }
    if words is not None:
        body["words"] = words
    return body
