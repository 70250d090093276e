"""The talker's prompt for Qwen3-TTS checkpoints, arranged exactly as they were trained.

Every prompt position sums a text-track vector and a codec-track vector (dual track):

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

import torch

from omnispeech.errors import InputError
from omnispeech.talker import Talker

ARRANGEMENTS = ("stream", "full")


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
    """The codec language tag for ``language`` (None for ``auto``).

    Raises:
        InputError: the checkpoint knows no such language.
    """
    ids = talker.spec.tokens
    name = language.lower()
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


def build_prompt(
    talker: Talker,
    role_ids: list[int],
    text_ids: list[int],
    language: str,
    voice: VoicePrompt,
    arrangement: str = "stream",
) -> TalkerPrompt:
    """Arrange the prompt of one utterance.

    Args:
        talker: a Qwen3-TTS talker (owns the text embedding).
        role_ids: the 3 ids of ``<|im_start|>assistant\\n``.
        text_ids: the text to speak (at least one token).
        language: a language name of the checkpoint or ``auto``.
        voice: speaker vector / built-in speaker / reference codes and transcript.
        arrangement: ``stream`` (text enters one token per frame) or ``full`` (all text in
            the prompt).
    """
    if arrangement not in ARRANGEMENTS:
        raise InputError(f"arrangement must be one of {ARRANGEMENTS}, got {arrangement!r}")
    if not text_ids:
        raise InputError("nothing to say: the text is empty")
    ids = talker.spec.tokens
    ref = talker.codec_head.weight
    device = ref.device

    def text(tokens: list[int]) -> torch.Tensor:
        return talker.embed_text(torch.tensor([tokens], device=device))[0]

    def codec(tokens: list[int]) -> torch.Tensor:
        return talker.embed_codec(torch.tensor(tokens, device=device))

    tag = language_tag(talker, language, voice.speaker_id)
    control = (
        [ids.codec_nothink, ids.codec_think_bos, ids.codec_think_eos]
        if tag is None
        else [ids.codec_think, ids.codec_think_bos, tag, ids.codec_think_eos]
    )
    codec_prefix = [codec(control)]
    if voice.speaker is not None:
        codec_prefix.append(voice.speaker.to(ref)[None])
    elif voice.speaker_id is not None:
        name = voice.speaker_id.lower()
        if name not in ids.speakers:
            known = ", ".join(sorted(ids.speakers)) or "none"
            raise InputError(f"unknown speaker {voice.speaker_id!r}; built-in speakers: {known}")
        codec_prefix.append(codec([ids.speakers[name]]))
    codec_prefix.append(codec([ids.codec_pad]))
    codec_track = torch.cat(codec_prefix)
    n = codec_track.shape[0]
    text_track = text([ids.tts_pad] * (n - 1) + [ids.tts_bos])
    parts = [text(role_ids), text_track + codec_track]
    bos = codec([ids.codec_bos])
    pad_vec, eos_vec = text([ids.tts_pad]), text([ids.tts_eos])
    trailing: list[int] = []
    end_in_prompt = arrangement == "full"

    if voice.in_context:
        if not voice.ref_text_ids:
            raise InputError("in-context cloning needs the reference transcript (ref_text)")
        frames = talker.embed_frames(voice.ref_codes.to(device)[None])[0]
        speech = torch.cat((bos, frames))
        words = torch.cat((text(voice.ref_text_ids + text_ids), eos_vec))
        if arrangement == "full":
            parts += [words + codec([ids.codec_pad]), speech + pad_vec]
        else:
            k = min(len(words), len(speech))
            pad = pad_vec.expand(len(speech) - k, -1)
            parts.append(torch.cat((words[:k], pad)) + speech)
            all_ids = voice.ref_text_ids + text_ids
            trailing = all_ids[k:]
            # tts_eos is the last text-track item; if it already entered the overlay, the
            # trailing text is empty and generation continues on tts_pad only.
            end_in_prompt = k == len(words)
    elif arrangement == "full":
        parts += [torch.cat((text(text_ids), eos_vec)) + codec([ids.codec_pad]), pad_vec + bos]
    else:
        parts.append(text(text_ids[:1]) + bos)
        trailing = text_ids[1:]
    return TalkerPrompt(torch.cat(parts)[None], trailing, end_in_prompt)
