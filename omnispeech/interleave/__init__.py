"""ARIA: one interleaved text/speech stream with an adaptive speech-to-text rate.

Pure Python (no torch, no numpy): it decides *which text item the talker consumes at each
position*; the pipeline turns that into embeddings. Units: text tokens and speech frames of
80 ms (12.5 Hz).

- :class:`RatePolicy`: look-ahead (text items fed ahead of their speech), frames-per-token
  target and bounds, speed control. ``RatePolicy.released()`` is what the released talkers use.
- :class:`Scheduler`: decode time; text is pushed as it arrives (e.g. from an LLM) and
  :meth:`Scheduler.next` returns one :class:`Position` per talker position, or ``WAIT``.
- :func:`build_training_stream`: the same arrangement for training, from text, frames and an
  optional alignment.
- :mod:`~omnispeech.interleave.arrangement`: the released Qwen3-TTS (streaming text,
  non-streaming, in-context cloning) and Qwen3-Omni arrangements, reproduced exactly.
"""

from __future__ import annotations

from omnispeech.interleave.arrangement import (
    OMNI_ASSISTANT_PREFIX_POSITIONS,
    ROLE_HEADER_POSITIONS,
    Arrangement,
    omni_talker,
    tts_icl,
    tts_non_streaming,
    tts_prefix_positions,
    tts_streaming,
)
from omnispeech.interleave.policy import (
    ALL_TEXT,
    PAD,
    TEXT_END,
    WAIT,
    WAIT_POSITION,
    ItemKind,
    Position,
    RatePolicy,
    TextItem,
)
from omnispeech.interleave.scheduler import Scheduler, SchedulerState
from omnispeech.interleave.training import build_training_stream

__all__ = [
    "ALL_TEXT",
    "OMNI_ASSISTANT_PREFIX_POSITIONS",
    "PAD",
    "ROLE_HEADER_POSITIONS",
    "TEXT_END",
    "WAIT",
    "WAIT_POSITION",
    "Arrangement",
    "ItemKind",
    "Position",
    "RatePolicy",
    "Scheduler",
    "SchedulerState",
    "TextItem",
    "build_training_stream",
    "omni_talker",
    "tts_icl",
    "tts_non_streaming",
    "tts_prefix_positions",
    "tts_streaming",
]
