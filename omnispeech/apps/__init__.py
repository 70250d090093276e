"""Applications over the public API: the Gradio demo and the OpenAI-compatible speech server.

- :mod:`omnispeech.apps.demo`: ``omnispeech demo`` (extra ``demo``: Gradio).
- :mod:`omnispeech.apps.server`: ``omnispeech serve`` (extra ``server``: FastAPI + uvicorn).

Both share :mod:`omnispeech.apps.models` (which folders to load, weight-sharing replicas for
concurrent requests), :mod:`omnispeech.apps.audio` (bytes in and out) and
:mod:`omnispeech.apps.voices` (saved voices on disk). Importing this package imports neither
Gradio nor FastAPI: each app checks for its extra when it is built.
"""
