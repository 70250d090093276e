"""The text/speech arrangements the released checkpoints were trained and run with.

Each function returns the part of the talker prompt where text and codec overlap, plus the text
items added one per generated frame afterwards (``trailing``; then ``PAD`` forever). It does not
return what comes before that part, which the pipeline builds (sizes from
:func:`tts_prefix_positions` and :data:`OMNI_ASSISTANT_PREFIX_POSITIONS`):

* Qwen3-TTS: an optional instruction turn ``<|im_start|>user\\n{instruct}<|im_end|>\\n`` (text
  track only), the role header ``<|im_start|>assistant\\n`` (3 positions, text only), and the
  control prefix: codec ``[think, think_bos, lang, think_eos]`` (language set) or ``[nothink,
  think_bos, think_eos]`` (auto), then the speaker slot (speaker id or x-vector; none for
  VoiceDesign), then one ``codec_pad`` position; text ``tts_pad`` over all of them except the
  last, which carries ``tts_bos``.
* Qwen3-Omni talker: the user turns (thinker states), then 8 assistant positions: role header
  (3), ``nothink, think_bos, think_eos``, speaker, ``tts_bos + codec_pad``.

Positions use the stream's convention (:class:`Position`): ``frame`` None is a text-only
position with ``codec_pad``; the position producing frame ``f`` has ``codec_bos`` (``f == 0``)
or frame ``f - 1`` as codec input. For in-context cloning the reference audio's frames are
frames ``0..R-1`` and generation starts at frame ``R``; token indices count over the reference
text followed by the target text.

Every arrangement here is the :class:`Scheduler`'s stream under
``RatePolicy.released(streaming_text=...)`` (tested), so a released checkpoint driven by the
scheduler with that policy sees exactly what it was trained on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final

from omnispeech.interleave.policy import PAD, TEXT_END, Position, TextItem

# <|im_start|> assistant \n: the first 3 tokens of the wrapper's prompt, text track only.
ROLE_HEADER_POSITIONS: Final = 3
# Qwen3-Omni assistant part before the overlay (dossier §5.4 B, positions 0..7): role header 3,
# nothink / think_bos / think_eos 3, speaker 1, tts_bos + codec_pad 1.
OMNI_ASSISTANT_PREFIX_POSITIONS: Final = 8


def tts_prefix_positions(*, language: bool, speaker: bool, instruct_tokens: int = 0) -> int:
    """Qwen3-TTS prompt positions before the overlay part.

    Args:
        language: a language tag is set (False: "auto"). A dialect speaker's tag replaces the
            language tag, which does not change the count.
        speaker: the speaker slot is present (a CustomVoice speaker, or the x-vector for
            cloning; absent for VoiceDesign).
        instruct_tokens: tokens of the optional instruction turn, ``<|im_start|>`` through the
            ``\\n`` after ``<|im_end|>`` (0: none).

    Returns:
        instruction + role header (3) + control prefix (3 or 4, + 1 speaker, + 1 ``codec_pad``).
    """
    if instruct_tokens < 0:
        raise ValueError(f"instruct_tokens must be >= 0, got {instruct_tokens}")
    control = (4 if language else 3) + (1 if speaker else 0) + 1
    return instruct_tokens + ROLE_HEADER_POSITIONS + control


@dataclasses.dataclass(frozen=True)
class Arrangement:
    """A released prompt's overlay part and the text fed during generation.

    Attributes:
        prefill: the overlay positions at the end of the prompt, in order.
        trailing: text items added at generation steps ``0, 1, ...`` (the positions after the
            prefill), then ``PAD`` forever; the reference's ``trailing_text_hidden``.
        reference_frames: ``R``: frames ``0..R-1`` are the reference audio (in-context cloning),
            given in the prompt; generated frames start at ``R``.
    """

    prefill: tuple[Position, ...]
    trailing: tuple[TextItem, ...] = ()
    reference_frames: int = 0

    @property
    def first_generated_frame(self) -> int:
        """The frame the last prefill position produces: the first one the talker samples."""
        frame = self.prefill[-1].frame
        assert frame is not None, "every released prompt ends with a speech position"
        return frame

    def text_at(self, step: int) -> TextItem:
        """Text item added at generation step ``step`` (0 = first position after the prefill)."""
        if step < 0:
            raise ValueError(f"generation step must be >= 0, got {step}")
        return self.trailing[step] if step < len(self.trailing) else PAD

    def stream(self, steps: int) -> list[Position]:
        """The prefill followed by ``steps`` generation positions (step ``s`` produces frame
        ``first_generated_frame + 1 + s``)."""
        start = self.first_generated_frame + 1
        return list(self.prefill) + [Position(self.text_at(s), start + s) for s in range(steps)]


def _items(tokens: Sequence[int]) -> list[TextItem]:
    return [TextItem.of_token(i, int(t)) for i, t in enumerate(tokens)]


def tts_streaming(tokens: Sequence[int]) -> Arrangement:
    """Qwen3-TTS streaming-text mode (``non_streaming_mode=False``; ``generate_voice_clone``'s
    default without a reference text).

    The prompt's last position carries text token 0 with ``codec_bos`` and produces frame 0;
    tokens ``1..n-1`` follow one per generated frame, then ``TEXT_END``, then ``PAD``: one text
    token per 80 ms frame.

    Args:
        tokens: the text's token ids (the wrapper's prompt tokens ``[3:-5]``), at least one.
    """
    if not tokens:
        # The reference would put <|im_end|> at the token-0 slot; that is not an arrangement.
        raise ValueError("streaming-text mode needs at least one text token")
    items = _items(tokens)
    return Arrangement(prefill=(Position(items[0], 0),), trailing=(*items[1:], TEXT_END))


def tts_non_streaming(tokens: Sequence[int]) -> Arrangement:
    """Qwen3-TTS non-streaming mode (``non_streaming_mode=True``; the default of
    ``generate_custom_voice`` and ``generate_voice_design``).

    All tokens and ``TEXT_END`` enter with ``codec_pad`` in the prompt, then one position
    ``tts_pad + codec_bos`` produces frame 0; every generated frame gets ``PAD``.
    """
    text = [Position(item, None) for item in (*_items(tokens), TEXT_END)]
    return Arrangement(prefill=(*text, Position(PAD, 0)))


def tts_icl(
    ref_tokens: Sequence[int],
    tokens: Sequence[int],
    reference_frames: int,
    *,
    streaming: bool,
) -> Arrangement:
    """Qwen3-TTS in-context voice cloning (Base model with a reference text and audio).

    The block's text track is ``ref_tokens + tokens + TEXT_END`` and its codec track
    ``codec_bos`` followed by the ``R`` reference frames (``R + 1`` positions producing frames
    ``0..R``; the last one produces the first generated frame).

    * ``streaming=True``: the two tracks overlay position by position (one text item per frame,
      no alignment). Longer text spills into ``trailing`` (one item per generated frame); shorter
      text is padded with ``PAD``.
    * ``streaming=False``: all text items with ``codec_pad`` first, then the codec track with
      ``PAD``.

    Args:
        ref_tokens: the reference transcript's token ids (its prompt tokens ``[3:-2]``).
        tokens: the target text's token ids (prompt tokens ``[3:-5]``).
        reference_frames: ``R`` >= 1, the reference audio's codec frames (80 ms each).
        streaming: the wrapper's ``not non_streaming_mode``.
    """
    if reference_frames < 1:
        raise ValueError(f"in-context cloning needs >= 1 reference frame, got {reference_frames}")
    items = [*_items([*ref_tokens, *tokens]), TEXT_END]
    codec_positions = reference_frames + 1  # codec_bos + the reference frames
    if not streaming:
        text = [Position(item, None) for item in items]
        speech = [Position(PAD, f) for f in range(codec_positions)]
        return Arrangement((*text, *speech), reference_frames=reference_frames)
    overlay = [Position(items[f] if f < len(items) else PAD, f) for f in range(codec_positions)]
    return Arrangement(
        tuple(overlay), trailing=tuple(items[codec_positions:]), reference_frames=reference_frames
    )


def omni_talker(tokens: Sequence[int]) -> Arrangement:
    """The Qwen3-Omni talker: thinker text tokens enter one per frame as they are generated.

    The first generated thinker token enters at the last prefill position (with ``codec_bos``,
    producing frame 0), the following ones one per generated frame, then ``TEXT_END``, then
    ``PAD``: the arrangement of :func:`tts_streaming`.

    Args:
        tokens: the thinker's generated tokens that have a hidden state, i.e. all but the
            final ``<|im_end|>`` (at least one).
    """
    if not tokens:
        raise ValueError("the Omni talker needs at least one thinker token with a hidden state")
    return tts_streaming(tokens)
