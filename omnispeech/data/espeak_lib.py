"""espeak-ng speech with word times, as the corpus tools import it; the implementation is
:mod:`omnispeech.pipelines.espeak_speech` (the TTS training recipes use it too)."""

from omnispeech.pipelines.espeak_speech import EspeakLibrary, SpokenWord

__all__ = ["EspeakLibrary", "SpokenWord"]
