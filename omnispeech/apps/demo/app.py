"""The Gradio page: voice cloning with streamed playback, saved voices, and transcription.

Tab "Clone a voice": a reference clip (upload or microphone) with an optional transcript (filled
in by ASR when the demo has an ASR model), the text, language, speed and seed; "Speak" streams
the speech into the player as it is generated; "Save voice" keeps the clip's voice by name.
Tab "Transcribe": a file or a recording, and live transcription while the person speaks.

Limits: upload size (checked by the page before sending and by the server), clip length and
text length; a queue whose concurrency limit is the number of model replicas. Errors appear as
one line in the page (a Gradio error message) and the page keeps working.

Streamed playback needs ``ffmpeg`` (Gradio encodes the stream for the browser with it); without
it the speech plays once complete.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
from collections.abc import Callable
from pathlib import Path

from omnispeech.apps.demo.handlers import NO_VOICE, Handlers
from omnispeech.apps.models import Models, ReplicaPool, replicate, require_extra
from omnispeech.apps.voices import VoiceStore
from omnispeech.errors import OmnispeechError

DEFAULT_VOICES_DIR = Path.home() / ".cache" / "omnispeech" / "voices"


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo page.

    Attributes:
        workers: requests processed at once (model replicas, weights shared).
        max_queue: requests waiting in Gradio's queue; more are refused with a message.
        max_file_bytes: largest upload.
        max_chars: longest text to speak.
        max_speech_seconds: most speech generated per request, in seconds.
        voices_dir: folder of saved voices (shared with ``omnispeech serve``).
        stream_audio: stream playback (None: when ``ffmpeg`` is installed).
    """

    workers: int = 1
    max_queue: int = 32
    max_file_bytes: int = 10_000_000
    max_chars: int = 1000
    max_speech_seconds: float = 300.0
    voices_dir: Path = DEFAULT_VOICES_DIR
    stream_audio: bool | None = None


def _readable(fn: Callable) -> Callable:
    """Turn the library's errors into Gradio's one-line error message."""
    import inspect

    import gradio as gr

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except (OmnispeechError, TimeoutError) as exc:
                raise gr.Error(str(exc), print_exception=False) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (OmnispeechError, TimeoutError) as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return wrapper


def build_demo(models: Models, config: DemoConfig | None = None):
    """The ``gr.Blocks`` page over ``models`` (call :func:`launch` to serve it).

    Raises:
        DependencyError: the ``demo`` extra (gradio) is missing.
    """
    require_extra("gradio", "demo")
    import gradio as gr

    config = config or DemoConfig()
    pool = ReplicaPool(replicate(models, config.workers))
    h = Handlers(pool, VoiceStore(config.voices_dir), config.max_chars, config.max_speech_seconds)
    streaming = config.stream_audio
    if streaming is None:
        streaming = shutil.which("ffmpeg") is not None
    rate = h.sample_rate

    def speak(clip, ref_text, saved, text, language, speed, seed):
        if streaming:
            for samples, status in h.speak(clip, ref_text, saved, text, language, speed, seed):
                yield (rate, samples) if samples.size else None, status
            return
        import numpy as np

        parts = list(h.speak(clip, ref_text, saved, text, language, speed, seed))
        yield (rate, np.concatenate([samples for samples, _ in parts])), parts[-1][1]

    def save(clip, ref_text, name):
        status = h.save_voice(clip, ref_text, name)
        return gr.update(choices=h.voice_choices(), value=name.strip()), status

    # No usage reporting: the page must work offline and tell no one what it is used for.
    with gr.Blocks(title="omnispeech demo", analytics_enabled=False) as page:
        gr.Markdown("# omnispeech\nClone a voice from a short clip, or transcribe speech.")
        with gr.Tab("Clone a voice"):
            with gr.Row():
                with gr.Column():
                    clip = gr.Audio(
                        sources=["upload", "microphone"],
                        type="filepath",
                        label="Reference clip (1-30 s; 3-15 s of clean speech works best)",
                        elem_id="ref-clip",
                    )
                    ref_text = gr.Textbox(
                        label="Transcript of the clip (optional: closer imitation)",
                        info="Filled in by speech recognition when available.",
                        elem_id="ref-text",
                    )
                    with gr.Row():
                        saved = gr.Dropdown(
                            h.voice_choices(), value=NO_VOICE, label="Voice", elem_id="voice"
                        )
                        name = gr.Textbox(label="Save the clip's voice as", elem_id="voice-name")
                    save_btn = gr.Button("Save voice", elem_id="save-voice")
                with gr.Column():
                    text = gr.Textbox(
                        label="Text to speak",
                        lines=4,
                        max_length=config.max_chars,
                        elem_id="text",
                    )
                    with gr.Row():
                        language = gr.Dropdown(h.languages, value="auto", label="Language")
                        speed = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="Speed")
                        seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
                    speak_btn = gr.Button("Speak", variant="primary", elem_id="speak")
                    out = gr.Audio(
                        label="Speech",
                        streaming=streaming,
                        autoplay=True,
                        interactive=False,
                        elem_id="speech",
                    )
                    status = gr.Markdown(elem_id="status")
        with gr.Tab("Transcribe"):
            asr_language = gr.Textbox(value="auto", label="Language (auto, en, de, ...)")
            with gr.Row():
                asr_in = gr.Audio(
                    sources=["upload", "microphone"],
                    type="filepath",
                    label="Audio file",
                    elem_id="asr-file",
                )
                asr_btn = gr.Button("Transcribe", elem_id="transcribe")
            asr_out = gr.Textbox(label="Transcript", elem_id="transcript")
            mic = gr.Audio(
                sources=["microphone"],
                streaming=True,
                type="numpy",
                label="Live: speak, the text follows (updates every 8 s of speech)",
            )
            live_out = gr.Textbox(label="Live transcript", elem_id="live-transcript")
            live = gr.State(None, time_to_live=600, delete_callback=h.live_drop)

        clip.change(_readable(h.transcript_of_clip), clip, ref_text)
        speak_btn.click(
            _readable(speak), [clip, ref_text, saved, text, language, speed, seed], [out, status]
        )
        save_btn.click(_readable(save), [clip, ref_text, name], [saved, status])
        asr_btn.click(_readable(h.transcribe), [asr_in, asr_language], asr_out)
        mic.stream(
            _readable(h.live_push), [live, mic, asr_language], [live, live_out], stream_every=0.5
        )
        mic.stop_recording(_readable(h.live_finish), live, [live, live_out])
    page.queue(default_concurrency_limit=config.workers, max_size=config.max_queue)
    return page


def launch(  # noqa: PLR0913 - where and how to serve
    page,
    config: DemoConfig,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    block: bool = True,
) -> None:
    """Serve the page; with ``block`` until interrupted, else in the background (stop it with
    ``page.close()``). ``share`` opens a public link: off unless asked for, because it puts
    the models on the internet."""
    page.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=config.max_file_bytes,
        show_error=True,
        footer_links=[],
        prevent_thread_lock=not block,
        quiet=not block,
    )
