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

These implement the released "dual track": every position is the sum of one text item
and one codec frame, so text can never enter faster than one token per frame. ARIA as in
Qwen3.5-Omni's talker is *one* interleaved sequence instead, where text items and speech frames
are separate positions (:mod:`~omnispeech.interleave.single_stream`):

- :class:`StreamPosition`: a text position (a token, or :data:`STREAM_TEXT_END` once after the
  text), a speech position (frame ``f`` is produced there), or :data:`STREAM_WAIT` at decode time.
- :class:`SingleStreamPolicy`: look-ahead, frames-per-token target, bounds ``[lo, hi]`` (below
  one frame per token allowed), speed. At every prefix of the stream, ``s`` frames against
  ``t`` text items, ``(t - L - 1) * lo - 1/2 < s`` and, while text remains,
  ``s <= max(0, (t - L) * hi + 1/2)``.
- :class:`SingleStreamScheduler`: decode time; ``push``/``close`` text in any pieces (the same
  stream as all at once), :meth:`SingleStreamScheduler.next` gives a position or ``WAIT``.
- :func:`build_single_stream`: the same rule for training, evenly spread or following an
  alignment within the bounds; returns a :class:`SingleStream`.
  :func:`build_reference_stream`: an in-context reference's stream (evenly spread, speed 1).
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
from omnispeech.interleave.single_stream import (
    STREAM_TEXT_END,
    STREAM_WAIT,
    SingleStreamPolicy,
    SingleStreamScheduler,
    SingleStreamState,
    StreamPosition,
)
from omnispeech.interleave.single_training import (
    SingleStream,
    build_reference_stream,
    build_single_stream,
)
from omnispeech.interleave.training import build_training_stream

__all__ = [
    "ALL_TEXT",
    "OMNI_ASSISTANT_PREFIX_POSITIONS",
    "PAD",
    "ROLE_HEADER_POSITIONS",
    "STREAM_TEXT_END",
    "STREAM_WAIT",
    "TEXT_END",
    "WAIT",
    "WAIT_POSITION",
    "Arrangement",
    "ItemKind",
    "Position",
    "RatePolicy",
    "Scheduler",
    "SchedulerState",
    "SingleStream",
    "SingleStreamPolicy",
    "SingleStreamScheduler",
    "SingleStreamState",
    "StreamPosition",
    "TextItem",
    "build_reference_stream",
    "build_single_stream",
    "build_training_stream",
    "omni_talker",
    "tts_icl",
    "tts_non_streaming",
    "tts_prefix_positions",
    "tts_streaming",
]
