"""Teacher-forced talker sequences in the released dual-track arrangement, batched.

Every talker position sums a text-track item and a codec-track item. One utterance with text
tokens ``t_0..t_{n-1}`` and codes ``c`` ``[K, N]`` becomes, position by position:

1. the role header ``<|im_start|>assistant\\n``: text track only (3 positions);
2. the control prefix: codec ``[think, think_bos, language, think_eos]`` (or ``[nothink,
   think_bos, think_eos]`` for "auto"), the speaker slot (the x-vector, when the model has a
   speaker encoder), ``codec_pad``; text ``tts_pad ... tts_pad, tts_bos``;
3. the stream of :func:`~omnispeech.interleave.build_training_stream` under the released
   policy (``stream``: one text item beside each frame from frame 0 on; ``full``: the whole
   text and ``tts_eos`` over ``codec_pad`` first): a lead-in position has codec ``codec_pad``;
   the position producing frame ``f`` has ``codec_bos`` (``f = 0``) or frame ``f - 1`` (the sum
   of its K code embeddings) and is trained to give ``c[0, f]``;
4. one last position, ``tts_pad`` + frame ``N - 1``, trained to give ``codec_eos``.

This is exactly the prompt :func:`~omnispeech.pipelines.tts_prompt.build_prompt` builds at
inference followed by the positions the generation loop appends, so the exported model runs in
``TTS`` unchanged.

The single stream (ARIA, :func:`arrange_single`) keeps items 1-2 and replaces 3-4 by the
positions of :func:`~omnispeech.interleave.build_single_stream`: a text position is its item
(token or ``tts_eos``) + ``codec_pad``; the speech position of frame ``f`` is ``tts_pad`` + frame
``f`` (the sum of its K code embeddings). Frame ``f`` is predicted at the position just before
its speech position, and ``codec_eos`` at the last position; text positions that follow other
positions carry no target (text comes from outside, the talker never predicts it).

**In-context cloning** (a :class:`Reference`: another recording of the same speaker, its text
``r_0..r_{m-1}`` and codes ``[K, R]``) puts the reference between the control prefix and the
target, exactly as the pipeline's in-context prompt does:

* dual track (:func:`~omnispeech.pipelines.tts_prompt.reference_overlay`): items 3-4 become the
  text track ``r + t + tts_eos`` over the codec track ``codec_bos`` + the ``R`` reference frames.
  ``stream`` overlays them position by position (``R + 1`` positions; missing text is
  ``tts_pad``, text left over enters one item per target frame afterwards, then ``tts_pad``);
  ``full`` puts all text over ``codec_pad`` first, then the codec track over ``tts_pad`` (and
  the target frames over ``tts_pad``). The block's last position is trained to give target frame
  0, the position of target frame ``f`` to give frame ``f + 1`` (``codec_eos`` after the last);
* single stream: after the control prefix, the reference's own single stream
  (:func:`~omnispeech.interleave.build_reference_stream`: its text and ``TEXT_END`` spread
  evenly over its frames, speed 1) with the positions above (text + ``codec_pad``, ``tts_pad`` +
  reference frame), then the target's stream as without a reference.

No reference position carries a target (the reference is given at inference, never generated),
and the speaker slot holds the reference's x-vector, as the pipeline's voice takes both from the
same clip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from omnispeech.interleave import (
    ItemKind,
    RatePolicy,
    SingleStreamPolicy,
    StreamPosition,
    TextItem,
    build_reference_stream,
    build_single_stream,
    build_training_stream,
)
from omnispeech.talker import TalkerTokens

IGNORE = -100  # no loss at this position (cross-entropy's ignore_index)
NONE = -1  # no codec-track item here (the role header; the speaker slot takes the x-vector)


@dataclasses.dataclass
class TTSBatch:
    """Right-padded talker sequences (causal attention never looks at the padding).

    Attributes:
        text_ids: ``[B, L]`` text-track token ids (``tts_pad`` in the padding).
        codec_ids: ``[B, L, K]`` codec-track items: column 0 a talker id (code of codebook 0 or
            a control id), columns 1..K-1 the residual codes of the same frame; ``-1`` where
            there is none (the position's codec vector is the sum of the present ones).
        speaker_mask: ``[B, L]`` True at the speaker slot.
        speakers: ``[B, hidden]`` x-vectors, or None for a model without a speaker slot.
        labels: ``[B, L]`` codebook-0 code or ``codec_eos`` to predict, ``-100`` elsewhere.
        frame_index: ``[M]`` flat index ``b * L + position`` of the position producing each
            frame of the batch (where the code predictor reads the talker's hidden state).
        frame_codes: ``[M, K]`` the codes of those frames.
        frames: total codec frames to learn in the batch (the unit of data throughput;
            in-context reference frames are given, not counted).
    """

    text_ids: torch.Tensor
    codec_ids: torch.Tensor
    speaker_mask: torch.Tensor
    speakers: torch.Tensor | None
    labels: torch.Tensor
    frame_index: torch.Tensor
    frame_codes: torch.Tensor
    frames: int

    def to(self, device: torch.device) -> TTSBatch:
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)


@dataclasses.dataclass(frozen=True)
class Reference:
    """An in-context reference (see the module docstring).

    Attributes:
        text_ids: its transcript's token ids (at least one).
        codes: ``[K, R]`` its codec codes, ``R >= 1`` frames.
    """

    text_ids: Sequence[int]
    codes: torch.Tensor


@dataclasses.dataclass
class _Sequence:
    text: list[int]
    codec: list[list[int]]
    labels: list[int]
    speaker_at: int
    frame_at: list[int]  # position whose hidden state predicts frame f, for f in 0..N-1

    def add(self, text: int, codec: list[int], label: int = IGNORE) -> None:
        self.text.append(text)
        self.codec.append(codec)
        self.labels.append(label)


def arrange(  # noqa: PLR0913 - one utterance's parts and the arrangement's choices
    text_ids: Sequence[int],
    codes: torch.Tensor,
    ids: TalkerTokens,
    role_ids: Sequence[int],
    language_tag: int | None,
    speaker: bool,
    mode: str,
    reference: Reference | None = None,
) -> _Sequence:
    """One utterance as talker positions (items 1-4 of the module docstring).

    Args:
        text_ids: the transcript's token ids.
        codes: ``[K, N]`` its codec codes, ``N >= 1``.
        ids: the talker's special ids.
        role_ids: ids of ``<|im_start|>assistant\\n``.
        language_tag: the codec language tag, None for the "auto" prefix.
        speaker: whether the control prefix has a speaker slot.
        mode: ``stream`` or ``full`` (the released text arrangements).
        reference: an in-context reference placed before the target, or None.
    """
    K, N = codes.shape
    seq = _prefix(K, ids, role_ids, language_tag, speaker)
    none = [NONE] * K
    frame_lists = codes.T.tolist()  # [N][K]
    if reference is not None:
        trailing = _overlay(seq, reference, text_ids, ids, mode)
        # The block ends on the last reference frame, whose position produces target frame 0;
        # each target frame's position then produces the next frame and reads the text left.
        seq.labels[-1] = frame_lists[0][0]
        seq.frame_at.append(len(seq.text) - 1)
        for f in range(N):
            text = trailing[f] if f < len(trailing) else ids.tts_pad
            if f + 1 < N:
                seq.frame_at.append(len(seq.text))
            seq.add(text, frame_lists[f], frame_lists[f + 1][0] if f + 1 < N else ids.codec_eos)
        return seq
    policy = RatePolicy.released(streaming_text=mode == "stream")
    for pos in build_training_stream(text_ids, N, policy):
        text = _text_id(pos.text, ids)
        if pos.frame is None:
            seq.add(text, [ids.codec_pad] + none[1:])
            continue
        f = pos.frame
        seq.frame_at.append(len(seq.text))
        codec = [ids.codec_bos] + none[1:] if f == 0 else frame_lists[f - 1]
        seq.add(text, codec, frame_lists[f][0])
    seq.add(ids.tts_pad, frame_lists[N - 1], ids.codec_eos)
    return seq


def arrange_single(  # noqa: PLR0913 - one utterance's parts and the arrangement's choices
    text_ids: Sequence[int],
    codes: torch.Tensor,
    ids: TalkerTokens,
    role_ids: Sequence[int],
    language_tag: int | None,
    speaker: bool,
    policy: SingleStreamPolicy,
    alignment: Sequence[int] | None = None,
    reference: Reference | None = None,
    unconditioned: bool = False,
) -> _Sequence:
    """One utterance as talker positions in the single stream (see the module docstring).

    Arguments as for :func:`arrange`, with the single-stream ``policy`` instead of a mode,
    and optionally the first frame of each text token (``n`` entries, non-decreasing, in
    ``[0, N)``) that the durations follow; None spreads them evenly. ``unconditioned`` puts
    ``tts_pad`` in place of every target text token (the positions, ``TEXT_END`` and any
    reference stay): the unconditional branch of classifier-free guidance, which the pipeline
    builds the same way (:mod:`omnispeech.pipelines.tts_single`).

    Raises:
        ValueError: the text (or the reference's) does not fit in its frames under
            ``policy``'s bounds.
    """
    K, N = codes.shape
    seq = _prefix(K, ids, role_ids, language_tag, speaker)
    if reference is not None:
        ref_frames = reference.codes.T.tolist()  # [R][K]
        stream = build_reference_stream(reference.text_ids, len(ref_frames), policy)
        for pos in stream.positions:
            seq.add(*_single_position(pos, ref_frames, ids, K))  # given: no target
    frame_lists = codes.T.tolist()  # [N][K]
    for pos in build_single_stream(text_ids, N, policy, alignment).positions:
        if pos.frame is not None:
            # The position before reads everything up to here and predicts this frame.
            seq.labels[-1] = frame_lists[pos.frame][0]
            seq.frame_at.append(len(seq.text) - 1)
        text, codec = _single_position(pos, frame_lists, ids, K)
        if unconditioned and pos.frame is None and pos.text.kind is ItemKind.TOKEN:
            text = ids.tts_pad
        seq.add(text, codec)
    seq.labels[-1] = ids.codec_eos
    return seq


def _single_position(
    pos: StreamPosition, frames: list[list[int]], ids: TalkerTokens, K: int
) -> tuple[int, list[int]]:
    """Text-track id and codec items of a single-stream position: a text item over
    ``codec_pad``, or ``tts_pad`` over the frame (``frames`` ``[N][K]``)."""
    if pos.frame is None:
        assert pos.text is not None
        return _text_id(pos.text, ids), [ids.codec_pad] + [NONE] * (K - 1)
    return ids.tts_pad, frames[pos.frame]


def _overlay(
    seq: _Sequence, reference: Reference, text_ids: Sequence[int], ids: TalkerTokens, mode: str
) -> list[int]:
    """Append the dual-track in-context block (the module docstring's first bullet, as
    :func:`~omnispeech.pipelines.tts_prompt.reference_overlay` builds it for a known text);
    returns the text ids still to enter, one per target frame."""
    K = reference.codes.shape[0]
    none = [NONE] * (K - 1)
    words = [*reference.text_ids, *text_ids, ids.tts_eos]
    speech = [[ids.codec_bos, *none], *reference.codes.T.tolist()]
    if mode == "full":
        for w in words:
            seq.add(w, [ids.codec_pad, *none])
        for frame in speech:
            seq.add(ids.tts_pad, frame)
        return []
    k = min(len(words), len(speech))
    for i, frame in enumerate(speech):
        seq.add(words[i] if i < k else ids.tts_pad, frame)
    return words[k:]


def _prefix(
    K: int, ids: TalkerTokens, role_ids: Sequence[int], language_tag: int | None, speaker: bool
) -> _Sequence:
    """Role header and control prefix (items 1-2 of the module docstring)."""
    none = [NONE] * K
    seq = _Sequence([], [], [], -1, [])
    for r in role_ids:
        seq.add(r, none)
    control = (
        [ids.codec_nothink, ids.codec_think_bos, ids.codec_think_eos]
        if language_tag is None
        else [ids.codec_think, ids.codec_think_bos, language_tag, ids.codec_think_eos]
    )
    for c in control:
        seq.add(ids.tts_pad, [c] + none[1:])
    if speaker:
        seq.speaker_at = len(seq.text)
        seq.add(ids.tts_pad, none)
    seq.add(ids.tts_bos, [ids.codec_pad] + none[1:])
    return seq


def _text_id(item: TextItem, ids: TalkerTokens) -> int:
    """The text-track token id of an item: the token, ``tts_eos`` or ``tts_pad``."""
    if item.kind is ItemKind.TOKEN:
        return item.token
    return ids.tts_eos if item.kind is ItemKind.TEXT_END else ids.tts_pad
