"""The talker's prompt for Qwen3-TTS checkpoints, arranged exactly as they were trained.

Every prompt position sums a text-track vector and a codec-track vector (dual track):

0. optionally an instruction turn ``<|im_start|>user\\n{instruction}<|im_end|>\\n``: text only;
1. role header ``<|im_start|>assistant\\n``: text only;
2. control prefix on the codec track: ``[think, think_bos, language, think_eos]`` (or
   ``[nothink, think_bos, think_eos]`` for automatic language), the speaker slot (a speaker
   vector or a built-in speaker id, if any), ``codec_pad``; text track ``tts_pad ... tts_bos``;
3. the text, in one of the released arrangements (``ARRANGEMENTS``):

   - ``stream``: the first text token with ``codec_bos``; the rest of the text and then
     ``tts_eos`` enter one per generated frame (the ``trailing`` ids);
   - ``full``: all text and ``tts_eos`` over ``codec_pad``, then ``tts_pad`` + ``codec_bos``;
   - in-context cloning adds the reference: text track ``ref_text + text + tts_eos``, codec
     track ``codec_bos`` + the reference frames (sum of their K code embeddings). ``stream``
     overlays the two position by position (surplus text becomes trailing, missing text is
     ``tts_pad``); ``full`` puts all text over ``codec_pad`` first, then the frames over
     ``tts_pad``.

Generated frames then receive the trailing text one per frame and ``tts_pad`` afterwards.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from omnispeech.errors import InputError
from omnispeech.interleave import ItemKind, TextItem
from omnispeech.pipelines.languages import language_name
from omnispeech.talker import Talker

ARRANGEMENTS = ("stream", "full")
VOICE_FORMAT = "omnispeech-voice-1"


@dataclasses.dataclass
class VoicePrompt:
    """A reusable voice: what cloning needs from a reference clip.

    Attributes:
        speaker: ``[hidden]`` speaker vector (x-vector) for the speaker slot, or None.
        ref_codes: ``[K, T]`` codes of the reference clip (in-context cloning), or None.
        ref_text_ids: token ids of the reference clip's transcript (required with codes).
        speaker_id: a built-in speaker name of the checkpoint instead of a vector.
    """

    speaker: torch.Tensor | None = None
    ref_codes: torch.Tensor | None = None
    ref_text_ids: list[int] | None = None
    speaker_id: str | None = None

    @property
    def in_context(self) -> bool:
        return self.ref_codes is not None

    def save(self, path: str | Path) -> None:
        """Write the voice to a safetensors file (reuse it without the reference clip).

        Raises:
            InputError: the file cannot be written (its folder is missing or read-only).
        """
        tensors = {}
        if self.speaker is not None:
            tensors["speaker"] = self.speaker.detach().float().cpu().contiguous()
        if self.ref_codes is not None:
            tensors["ref_codes"] = self.ref_codes.detach().long().cpu().contiguous()
            tensors["ref_text_ids"] = torch.tensor(self.ref_text_ids or [], dtype=torch.long)
        meta = {"format": VOICE_FORMAT, "speaker_id": self.speaker_id or ""}
        try:
            save_file(tensors, str(path), metadata=meta)
        except (OSError, SafetensorError) as exc:  # a missing or read-only folder
            raise InputError(f"{path}: cannot write the voice ({exc})") from None

    @classmethod
    def load(cls, path: str | Path) -> VoicePrompt:
        """Read a voice written by :meth:`save`.

        Raises:
            InputError: a missing file, or one that is not a saved voice.
        """
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
        except (OSError, SafetensorError) as exc:
            raise InputError(f"{path}: not a saved voice ({exc})") from None
        if meta.get("format") != VOICE_FORMAT:
            raise InputError(f"{path}: not a saved voice (no {VOICE_FORMAT} marker)")
        ids = tensors.get("ref_text_ids")
        return cls(
            speaker=tensors.get("speaker"),
            ref_codes=tensors.get("ref_codes"),
            ref_text_ids=ids.tolist() if ids is not None else None,
            speaker_id=meta.get("speaker_id") or None,
        )


@dataclasses.dataclass
class TalkerPrompt:
    """The prefill and the text still to feed.

    Attributes:
        embeds: ``[1, L, hidden]`` prompt vectors.
        trailing: text ids fed one per generated frame, in order (may be empty).
        end_in_prompt: ``tts_eos`` is already in the prompt (``full``); otherwise it follows
            the trailing ids.
    """

    embeds: torch.Tensor
    trailing: list[int]
    end_in_prompt: bool


def language_tag(talker: Talker, language: str, speaker_id: str | None) -> int | None:
    """The codec language tag for ``language`` (a name such as ``english`` or an ISO code such
    as ``en``; None for ``auto``).

    Raises:
        InputError: the checkpoint knows no such language.
    """
    ids = talker.spec.tokens
    name = language.strip().lower()
    # any ISO 639 code of omnispeech's table (``nl`` -> ``dutch``), not only the released
    # models' ten: a model trained here may know other languages by their English names
    name = language_name(name).lower()
    tag = None
    if name != "auto":
        if name not in ids.languages:
            known = ", ".join(sorted(k for k in ids.languages if "dialect" not in k))
            raise InputError(f"unsupported language {language!r}; this model knows: auto, {known}")
        tag = ids.languages[name]
    if speaker_id is not None and name in ("chinese", "auto"):
        dialect = ids.dialects.get(speaker_id.lower())
        if dialect:
            tag = ids.languages[dialect]
    return tag


class TextTrack:
    """Text-track vectors ``[hidden]`` of a Qwen3-TTS talker: tokens and the control items."""

    def __init__(self, talker: Talker) -> None:
        self.talker = talker
        ids = talker.spec.tokens
        self.device = talker.codec_head.weight.device
        specials = self.tokens([ids.tts_pad, ids.tts_bos, ids.tts_eos])
        self.pad, self.bos, self.eos = specials[0], specials[1], specials[2]

    def tokens(self, token_ids: list[int]) -> torch.Tensor:
        """``[len(token_ids), hidden]``."""
        return self.talker.embed_text(torch.tensor([token_ids], device=self.device))[0]

    def item(self, item: TextItem) -> torch.Tensor:
        """The vector of one scheduler item (token, text end or pad) -> ``[hidden]``."""
        if item.kind is ItemKind.TOKEN:
            return self.tokens([item.token])[0]
        if item.kind is ItemKind.TEXT_END:
            return self.eos
        if item.kind is ItemKind.PAD:
            return self.pad
        raise ValueError(f"no vector for {item!r}")

    def codec(self, codec_ids: list[int]) -> torch.Tensor:
        """Codec-track vectors of talker ids -> ``[len(codec_ids), hidden]``."""
        return self.talker.embed_codec(torch.tensor(codec_ids, device=self.device))


def control_prefix(
    track: TextTrack,
    role_ids: list[int],
    language: str,
    voice: VoicePrompt,
    instruct_ids: list[int] | None = None,
) -> torch.Tensor:
    """[Instruction turn +] role header + control prefix (items 1-2 of the module docstring)
    -> ``[L, hidden]``.

    ``instruct_ids`` are the ids of ``<|im_start|>user\n{instruction}<|im_end|>\n``, placed
    first on the text track only (how the 1.7B CustomVoice / VoiceDesign models take style and
    voice descriptions).

    Raises:
        InputError: an unknown language or built-in speaker.
    """
    talker = track.talker
    ids = talker.spec.tokens
    tag = language_tag(talker, language, voice.speaker_id)
    control = (
        [ids.codec_nothink, ids.codec_think_bos, ids.codec_think_eos]
        if tag is None
        else [ids.codec_think, ids.codec_think_bos, tag, ids.codec_think_eos]
    )
    codec_prefix = [track.codec(control)]
    if voice.speaker is not None:
        if voice.speaker.shape != track.pad.shape:
            raise InputError(
                f"the voice's speaker vector has {voice.speaker.shape[-1]} values but this "
                f"model's talker takes {track.pad.shape[-1]}: it was made with another model"
            )
        codec_prefix.append(voice.speaker.to(track.pad)[None])
    elif voice.speaker_id is not None:
        name = voice.speaker_id.lower()
        if name not in ids.speakers:
            known = ", ".join(sorted(ids.speakers)) or "none"
            raise InputError(f"unknown speaker {voice.speaker_id!r}; built-in speakers: {known}")
        codec_prefix.append(track.codec([ids.speakers[name]]))
    codec_prefix.append(track.codec([ids.codec_pad]))
    codec_track = torch.cat(codec_prefix)
    n = codec_track.shape[0]
    text_track = torch.cat((track.pad.expand(n - 1, -1), track.bos[None]))
    parts = [track.tokens(role_ids), text_track + codec_track]
    if instruct_ids:
        parts.insert(0, track.tokens(instruct_ids))
    return torch.cat(parts)


def reference_frames(track: TextTrack, voice: VoicePrompt) -> torch.Tensor:
    """The codec-track vectors of an in-context voice's reference frames -> ``[T, hidden]``
    (each the sum of the frame's K code embeddings), after checking the voice.

    Raises:
        InputError: no reference transcript, or reference codes of the wrong shape or range.
    """
    if not voice.ref_text_ids:
        raise InputError("in-context cloning needs the reference transcript (ref_text)")
    talker = track.talker
    codes = voice.ref_codes
    if (
        codes is None
        or codes.ndim != 2
        or codes.shape[0] != talker.num_code_groups
        or codes.shape[1] == 0
    ):
        shape = None if codes is None else tuple(codes.shape)
        raise InputError(f"reference codes must be [{talker.num_code_groups}, T], got {shape}")
    # Codebook 0 lives below the talker's control ids; the others in the predictor's tables.
    first = talker.spec.talker.vocab_size - 1024
    rest = talker.spec.code_predictor.vocab_size
    if int(codes.min()) < 0 or int(codes[0].max()) >= first or int(codes[1:].max()) >= rest:
        raise InputError(
            f"reference codes out of range (codebook 0 < {first}, others < {rest}): "
            "made with another codec?"
        )
    return talker.embed_frames(codes.to(track.device)[None])[0]


def reference_overlay(
    track: TextTrack, voice: VoicePrompt, text_ids: list[int], closed: bool, arrangement: str
) -> tuple[torch.Tensor, list[int], bool]:
    """The in-context cloning block: reference transcript + text over the reference frames.

    Args:
        track: the talker's text track.
        voice: a voice with reference codes and transcript.
        text_ids: the target text known so far.
        closed: no more text follows (``tts_eos`` may be placed).
        arrangement: ``stream`` or ``full`` (``full`` needs ``closed``).

    Returns:
        ``(embeds [L, hidden], trailing ids, end_in_prompt)``: positions to append to the
        control prefix, the text ids still to feed one per frame, and whether ``tts_eos``
        already entered.
    """
    ids = track.talker.spec.tokens
    frames = reference_frames(track, voice)
    speech = torch.cat((track.codec([ids.codec_bos]), frames))
    assert voice.ref_text_ids is not None  # checked by reference_frames
    words_ids = voice.ref_text_ids + text_ids
    words = track.tokens(words_ids)
    if closed:
        words = torch.cat((words, track.eos[None]))
    if arrangement == "full":
        if not closed:
            raise ValueError("the full arrangement needs the whole text")
        pad_codec = track.codec([ids.codec_pad])
        return torch.cat((words + pad_codec, speech + track.pad)), [], True
    k = min(len(words), len(speech))
    text = torch.cat((words[:k], track.pad.expand(len(speech) - k, -1)))
    # With more text than reference frames the surplus enters one token per frame, followed
    # by tts_eos; otherwise tts_eos is already inside the overlay.
    return text + speech, words_ids[k:], closed and k == len(words)


def build_prompt(
    talker: Talker,
    role_ids: list[int],
    text_ids: list[int],
    language: str,
    voice: VoicePrompt,
    arrangement: str = "stream",
    instruct_ids: list[int] | None = None,
) -> TalkerPrompt:
    """Arrange the whole prompt of one utterance whose text is known.

    Args:
        talker: a Qwen3-TTS talker (owns the text embedding).
        role_ids: the ids of ``<|im_start|>assistant\n``.
        text_ids: the text to speak (at least one token).
        language: a language name of the checkpoint or ``auto``.
        voice: speaker vector / built-in speaker / reference codes and transcript.
        arrangement: ``stream`` (text enters one token per frame) or ``full`` (all text in
            the prompt).
        instruct_ids: optional instruction turn (see :func:`control_prefix`).
    """
    if arrangement not in ARRANGEMENTS:
        raise InputError(f"arrangement must be one of {ARRANGEMENTS}, got {arrangement!r}")
    if not text_ids:
        raise InputError("nothing to say: the text is empty")
    track = TextTrack(talker)
    ids = talker.spec.tokens
    prefix = control_prefix(track, role_ids, language, voice, instruct_ids)
    if voice.in_context:
        block, trailing, end = reference_overlay(track, voice, text_ids, True, arrangement)
        return TalkerPrompt(torch.cat((prefix, block))[None], trailing, end)
    bos = track.codec([ids.codec_bos])
    if arrangement == "full":
        words = torch.cat((track.tokens(text_ids), track.eos[None]))
        block = torch.cat((words + track.codec([ids.codec_pad]), track.pad[None] + bos))
        return TalkerPrompt(torch.cat((prefix, block))[None], [], True)
    block = track.tokens(text_ids[:1]) + bos
    return TalkerPrompt(torch.cat((prefix, block))[None], text_ids[1:], False)
