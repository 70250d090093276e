"""A synthetic multilingual multi-speaker speech corpus from offline TTS engines and text.

* :mod:`omnispeech.data.text`: sentences per language (gettext catalogs, Wesnoth, built-in).
* :mod:`omnispeech.data.engines`: one class per TTS engine (espeak-ng, MBROLA, flite,
  festival, pico, RHVoice): voices, and text -> wav.
* :mod:`omnispeech.data.build`: plan, synthesise (in parallel, resumably), write the manifest.
* :mod:`omnispeech.data.stats`: read a corpus back, its statistics, the languages on offer.
* :mod:`omnispeech.data.voices`: more training voices, recordings resampled faster or slower.

The command line is ``omnispeech data build|languages|stats|voices``; see ``docs/corpus.md``.
"""

from omnispeech.data.build import (
    BuildConfig,
    BuildResult,
    EngineMissingWarning,
    build_corpus,
    plan_corpus,
)
from omnispeech.data.engines import Engine, EspeakNG, SynthesisError, Voice, default_engines
from omnispeech.data.stats import corpus_stats, language_table, read_manifest
from omnispeech.data.text import Sentence, TextSource, gather_sentences

__all__ = [
    "BuildConfig",
    "BuildResult",
    "Engine",
    "EngineMissingWarning",
    "EspeakNG",
    "Sentence",
    "SynthesisError",
    "TextSource",
    "Voice",
    "build_corpus",
    "corpus_stats",
    "default_engines",
    "gather_sentences",
    "language_table",
    "plan_corpus",
    "read_manifest",
]
