"""The vocabulary of the interleaved stream: text-track items, positions and the rate policy.

The talker reads one stream of positions. Every position is the sum of a text-track item and a
codec-track item (the released "dual track": there is no interleaving along the sequence axis).
This module names what can sit on the text track and where speech frames come from:

* A text-track item is a text token (its index ``i`` in the utterance's text, 0-based, and its
  token id), ``TEXT_END`` (the model's ``tts_eos``, exactly once, right after the text) or
  ``PAD`` (``tts_pad``: nothing new this position). ``WAIT`` is not a track item: it is the
  scheduler's answer when the next item is due but has not arrived yet.
* The text of an utterance with ``n`` tokens has ``n + 1`` *items*: tokens ``0..n-1`` and then
  ``TEXT_END`` as item ``n``. The look-ahead and the rate rules treat ``TEXT_END`` as one more
  item, so the model knows the text has ended while it speaks the last tokens.
* A position either produces speech frame ``f`` (80 ms of codes, 12.5 Hz; its codec input is
  frame ``f - 1``, or ``codec_bos`` for ``f == 0``) or is a *lead-in* position before the first
  frame, whose codec input is ``codec_pad`` and whose output is not speech. This is exactly how
  the released non-streaming prompts carry their text, and the released streaming prompts have
  no lead-in.

Rates are counted in speech frames per text item ("frames per token"). One text item enters per
position, so no rate can go below one frame per token; :class:`RatePolicy` clamps to that.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
from fractions import Fraction
from typing import Final, Protocol

from omnispeech.config import FrozenConfig

# A look-ahead this large puts the whole text in the lead-in, before the first frame: the
# released non-streaming mode. sys.maxsize keeps the field a plain int (JSON-serialisable).
ALL_TEXT: Final[int] = sys.maxsize


class ItemKind(enum.Enum):
    """What a text-track item is (``WAIT`` only ever comes from :meth:`Scheduler.next`)."""

    TOKEN = "token"
    TEXT_END = "text_end"
    PAD = "pad"
    WAIT = "wait"


@dataclasses.dataclass(frozen=True, slots=True)
class TextItem:
    """One text-track item.

    Attributes:
        kind: token, text end, pad, or the scheduler's wait.
        index: for a token, its index in the utterance's text (0-based, in text tokens); -1
            otherwise.
        token: for a token, its id in the text vocabulary; -1 otherwise.
    """

    kind: ItemKind
    index: int = -1
    token: int = -1

    @classmethod
    def of_token(cls, index: int, token: int) -> TextItem:
        """The text token at ``index`` (0-based) with id ``token``."""
        if index < 0:
            raise ValueError(f"token index must be >= 0, got {index}")
        return cls(ItemKind.TOKEN, index, token)

    @property
    def is_token(self) -> bool:
        return self.kind is ItemKind.TOKEN

    def __repr__(self) -> str:
        if self.kind is ItemKind.TOKEN:
            return f"Token({self.index}, id={self.token})"
        return self.kind.name


PAD: Final = TextItem(ItemKind.PAD)
TEXT_END: Final = TextItem(ItemKind.TEXT_END)
WAIT: Final = TextItem(ItemKind.WAIT)


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    """One position of the stream: the text item it consumes and the frame it produces.

    Attributes:
        text: the text-track item consumed at this position.
        frame: index of the speech frame this position produces (0-based, frames of 80 ms); its
            codec input is frame ``frame - 1``, or ``codec_bos`` when ``frame == 0``. ``None``
            for a lead-in position (codec input ``codec_pad``, no speech produced) and for the
            scheduler's ``WAIT``, which is no position at all.
    """

    text: TextItem
    frame: int | None

    @property
    def is_wait(self) -> bool:
        """True for the scheduler's answer "the next text item has not arrived yet"."""
        return self.text.kind is ItemKind.WAIT

    @property
    def is_lead_in(self) -> bool:
        """True for a text-only position before the first speech frame."""
        return self.frame is None and not self.is_wait


WAIT_POSITION: Final = Position(WAIT, None)


@dataclasses.dataclass(frozen=True)
class RatePolicy(FrozenConfig):
    """How fast text enters relative to speech, and how far ahead of it.

    Rates are in speech frames (80 ms) per text item. The effective values divide by ``speed``
    and never go below 1 frame per item, because one item enters per position:

    * ``lo = max(1, min_frames_per_token / speed)``, ``hi = max(1, max_frames_per_token / speed)``;
    * the duration given to one token is ``d = max(1, clamp(estimate, min, max) / speed)``, where
      the estimate is ``frames_per_token`` or a per-token estimate (see :class:`Scheduler`).

    Attributes:
        lookahead: text items fed ahead of the speech that realises them (>= 0). Items
            ``0..lookahead-1`` enter in the lead-in, before the first frame; item
            ``lookahead + k`` enters at the frame where token ``k``'s speech starts. 0 is the
            released streaming-text arrangement; :data:`ALL_TEXT` the released non-streaming one.
        frames_per_token: target frames per text token (before ``speed``); must lie within
            ``[min_frames_per_token, max_frames_per_token]``.
        min_frames_per_token: lower rate bound: text never enters faster than this.
        max_frames_per_token: upper rate bound: while text remains, a new item enters at least
            every ``ceil(hi)`` frames, so speech never outruns the text it is given.
        speed: speech speed control: > 1 feeds text faster (fewer frames per token), < 1 slower.
            It scales the target and both bounds.
    """

    lookahead: int = 0
    frames_per_token: float = 1.0
    min_frames_per_token: float = 1.0
    max_frames_per_token: float = 1.0
    speed: float = 1.0

    def __post_init__(self) -> None:
        check_rate_fields(self)

    @classmethod
    def released(cls, *, streaming_text: bool = True) -> RatePolicy:
        """The policy the released Qwen3-TTS / Qwen3-Omni talkers were trained and run with.

        Args:
            streaming_text: True: one text token per frame from the first frame on, no lead-in
                (Qwen3-TTS ``non_streaming_mode=False``, and the Qwen3-Omni talker). False: the
                whole text and ``TEXT_END`` in the lead-in (``non_streaming_mode=True``).
        """
        return cls(lookahead=0 if streaming_text else ALL_TEXT)

    def token_frames(self, estimate: float | None = None) -> Fraction:
        """Frames given to one token: ``max(1, clamp(estimate, min, max) / speed)``, exact.

        Args:
            estimate: frames per token for this token before ``speed``; None uses
                ``frames_per_token``.

        Returns:
            The duration in frames as an exact fraction, so that summing many of them never
            drifts (floats do, and the rate bounds are stated exactly).
        """
        if estimate is None:
            estimate = self.frames_per_token
        elif not (math.isfinite(estimate) and estimate > 0):
            raise ValueError(f"a frames-per-token estimate must be finite and > 0, got {estimate}")
        clamped = min(max(estimate, self.min_frames_per_token), self.max_frames_per_token)
        return max(Fraction(1), Fraction(clamped) / Fraction(self.speed))

    @property
    def min_gap(self) -> int:
        """Fewest frames between the entries of consecutive items: ``floor(lo)`` (>= 1)."""
        lo = Fraction(self.min_frames_per_token) / Fraction(self.speed)
        return max(1, math.floor(lo))

    @property
    def max_gap(self) -> int:
        """Most frames between the entries of consecutive items while text remains:
        ``ceil(hi)`` (>= 1)."""
        hi = Fraction(self.max_frames_per_token) / Fraction(self.speed)
        return max(1, math.ceil(hi))


class RateFields(Protocol):
    """The fields every rate policy has, read-only (see :class:`RatePolicy` for their units)."""

    @property
    def lookahead(self) -> int: ...
    @property
    def frames_per_token(self) -> float: ...
    @property
    def min_frames_per_token(self) -> float: ...
    @property
    def max_frames_per_token(self) -> float: ...
    @property
    def speed(self) -> float: ...


def check_rate_fields(config: RateFields) -> None:
    """Validate the fields a rate policy shares (look-ahead, target, bounds, speed).

    Shared by :class:`RatePolicy` and the single-stream policy, whose fields mean the same.

    Raises:
        ValueError: naming the offending field.
    """
    # bool is an int subclass; a True look-ahead is a bug, not "1".
    if isinstance(config.lookahead, bool) or not isinstance(config.lookahead, int):
        raise ValueError(f"lookahead must be an int, got {config.lookahead!r}")
    if config.lookahead < 0:
        raise ValueError(f"lookahead must be >= 0 text tokens, got {config.lookahead}")
    for name in ("frames_per_token", "min_frames_per_token", "max_frames_per_token", "speed"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if config.min_frames_per_token > config.max_frames_per_token:
        raise ValueError(
            f"min_frames_per_token ({config.min_frames_per_token}) must not exceed "
            f"max_frames_per_token ({config.max_frames_per_token})"
        )
    if not config.min_frames_per_token <= config.frames_per_token <= config.max_frames_per_token:
        raise ValueError(
            f"frames_per_token ({config.frames_per_token}) must lie within "
            f"[{config.min_frames_per_token}, {config.max_frames_per_token}]"
        )


def round_half_up(value: Fraction) -> int:
    """``floor(value + 1/2)``: the frame at which a nominal (fractional) time falls."""
    return math.floor(value + Fraction(1, 2))
