"""Typed errors of omnispeech.

Every error a user can cause (a bad file, bad audio, a checkpoint of the wrong kind) is raised as
a subclass of :class:`OmnispeechError`, with a message that says what is wrong and what to do.
The CLI prints that message on one line and exits non-zero; library users catch the type.
"""

from __future__ import annotations


class OmnispeechError(Exception):
    """Base class of every error omnispeech raises on purpose."""


class AudioError(OmnispeechError):
    """Audio that cannot be used: unreadable, empty, silent or not finite."""


class AudioFileError(AudioError):
    """An audio file that is missing or cannot be decoded."""


class EmptyAudioError(AudioError):
    """Audio with no samples (or too few to make a single feature frame)."""


class InvalidAudioError(AudioError):
    """Audio whose samples are not finite (NaN or Inf) or whose shape makes no sense."""


class CheckpointError(OmnispeechError):
    """A checkpoint folder that is missing, incomplete, or of the wrong kind."""


class ConfigError(OmnispeechError):
    """A configuration with unknown or invalid fields."""


class InputError(OmnispeechError):
    """An argument outside the range the model accepts (wrong shape, dtype or value)."""


class LanguageError(InputError):
    """A language that the model, or its text front end (e.g. espeak-ng), cannot speak."""


class TokenizerError(OmnispeechError):
    """A tokenizer that cannot be built from the files of a checkpoint folder."""


class DependencyError(OmnispeechError):
    """An optional package that this feature needs is not installed."""


class AudioWarning(UserWarning):
    """Audio that can be processed but may not sound as intended: digital silence or clipping."""
