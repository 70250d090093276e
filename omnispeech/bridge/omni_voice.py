"""A voice for the Qwen3-Omni Thinker: its states into the talker, codes through Code2Wav.

The released arrangement of the talker's input (one vector per position, a text track plus a
codec track):

- **User turns**, every position from each ``<|im_start|>user`` to its ``<|im_end|>\\n``: audio
  and image positions carry ``hidden_projection`` of the Thinker's hidden state number
  ``accept_hidden_layer``; the others ``text_projection`` of the Thinker's input embedding.
  System and earlier assistant turns are left out.
- **The assistant head**, 9 positions: ``<|im_start|>``, ``assistant``, ``\\n`` (text track
  only); then tts_pad + nothink, tts_pad + think_bos, tts_pad + think_eos, tts_pad + speaker,
  tts_bos + codec_pad, and the Thinker's first reply token + codec_bos.
- **Then one text vector per frame**: reply tokens 2, 3, ... while the Thinker writes; where
  its last token would go (the last token has no Thinker state in the released pipeline,
  whether it is end-of-turn or the length limit), tts_eos; tts_pad after that.

So the talker starts as soon as the Thinker's first token exists, and each frame waits only
for the token it consumes: speech runs about two tokens behind the text, and each frame's
audio leaves the streaming vocoder at once.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from omnispeech.bridge.thinker import ChatIds
from omnispeech.errors import CheckpointError, InputError
from omnispeech.talker import GenerationConfig, Talker
from omnispeech.talker.stepper import FrameStepper, default_step
from omnispeech.vocoder import Code2Wav

# Frames of one reply at most: the released generation's talker limit (4096 frames = 328 s).
MAX_FRAMES = 4096


@dataclasses.dataclass(frozen=True)
class ThinkerStates:
    """What the talker needs from the Thinker's prompt pass.

    Attributes:
        input_ids: ``[L]`` the prompt (ending with ``<|im_start|>assistant\\n``).
        embeds: ``[L, H]`` the Thinker's input embeddings (audio tokens spliced in).
        hidden: ``[L, H]`` its hidden state number ``accept_hidden_layer``, or None when the
            prompt has no audio or image position.
    """

    input_ids: torch.Tensor
    embeds: torch.Tensor
    hidden: torch.Tensor | None


class OmniVoice:
    """The Qwen3-Omni talker with its code predictor and the Code2Wav vocoder.

    Args:
        talker: a Qwen3-Omni (mixture-of-experts) talker.
        vocoder: the checkpoint's Code2Wav.
        text_embed: the Thinker's token embedding table (``[vocab, H]``).
        ids: the chat template's ids.
        generation: speech sampling (default: the released one,
            :meth:`GenerationConfig.qwen3_omni`).

    Raises:
        CheckpointError: a Qwen3-TTS talker, a vocoder of another codebook count, or a
            Thinker whose width is not the talker's ``thinker_hidden_size``.
    """

    def __init__(  # noqa: PLR0913 - the voice's parts
        self,
        talker: Talker,
        vocoder: Code2Wav,
        text_embed: nn.Embedding,
        ids: ChatIds,
        generation: GenerationConfig | None = None,
    ) -> None:
        if talker.spec.family != "qwen3_omni" or talker.spec.accept_hidden_layer is None:
            raise CheckpointError("a Qwen3-TTS talker speaks text, not Thinker states")
        if vocoder.cfg.num_quantizers != talker.num_code_groups:
            raise CheckpointError(
                f"the talker makes {talker.num_code_groups} codebooks per frame but the vocoder "
                f"decodes {vocoder.cfg.num_quantizers}"
            )
        width = talker.spec.talker.text_hidden_size
        if text_embed.embedding_dim != width:
            raise CheckpointError(
                f"the Thinker is {text_embed.embedding_dim} wide but the talker takes "
                f"{width}-wide Thinker states: the two come from different models"
            )
        self.talker = talker
        self.vocoder = vocoder
        self.text_embed = text_embed
        self.ids = ids
        self.generation = generation or GenerationConfig.qwen3_omni()
        # How frames are stepped (omnispeech.talker.stepper): on a CUDA device the fixed-shape
        # step replayed as CUDA graphs, experts included; "static" runs it eagerly.
        self.step = default_step(talker)

    @property
    def speakers(self) -> list[str]:
        """The built-in voices (lower case)."""
        return sorted(self.talker.spec.tokens.speakers)

    @property
    def sample_rate(self) -> int:
        return self.vocoder.sample_rate

    def speaker_id(self, name: str | None) -> int:
        """The codec id of a built-in voice (None: ``ethan``, the released default).

        Raises:
            InputError: an unknown name.
        """
        known = self.talker.spec.tokens.speakers
        key = (name or ("ethan" if "ethan" in known else min(known, default=""))).lower()
        if key not in known:
            raise InputError(f"unknown speaker {name!r}; this model has {', '.join(self.speakers)}")
        return known[key]

    def text_track(self, token_ids: list[int]) -> torch.Tensor:
        """``text_projection`` of the Thinker's embeddings of ``token_ids`` -> ``[n, hidden]``."""
        table = self.text_embed
        ids = torch.tensor(token_ids, dtype=torch.long, device=table.weight.device)
        return self.talker.embed_thinker(table(ids).to(self._dtype()))

    def _dtype(self) -> torch.dtype:
        return self.talker.codec_head.weight.dtype

    def speak(
        self,
        states: ThinkerStates,
        speaker: str | None = None,
        generator: torch.Generator | None = None,
        max_frames: int = MAX_FRAMES,
    ) -> Speaking:
        """Start speaking the reply to ``states``' prompt; feed its tokens to the result."""
        return Speaking(self, states, self.speaker_id(speaker), generator, max_frames)

    def user_part(self, states: ThinkerStates) -> torch.Tensor:
        """The talker's vectors for the user turns of the prompt -> ``[U, hidden]``."""
        ids = states.input_ids.tolist()
        keep, role = [], None
        for i, token in enumerate(ids):
            if token == self.ids.im_start:
                role = ids[i + 1] if i + 1 < len(ids) else None
            elif role is None and i == 0:
                role = ids[1] if len(ids) > 1 else None
            if role == self.ids.user:
                keep.append(i)
        index = torch.tensor(keep, dtype=torch.long)
        multimodal = torch.isin(
            states.input_ids[index], torch.tensor([self.ids.audio, self.ids.image, self.ids.video])
        )
        dtype = self._dtype()
        out = self.talker.embed_thinker(states.embeds[index].to(dtype))
        if bool(multimodal.any()):
            if states.hidden is None:
                raise InputError("the prompt has audio positions but no Thinker hidden states")
            mm = index[multimodal]
            out[multimodal] = self.talker.embed_thinker(states.hidden[mm].to(dtype), True)
        return out

    def assistant_head(self, states: ThinkerStates, speaker_id: int) -> tuple[torch.Tensor, int]:
        """The first 8 assistant positions (the 9th needs the first reply token) ->
        (``[8, hidden]``, index of the assistant's ``<|im_start|>`` in the prompt).

        Raises:
            InputError: the prompt does not end with ``<|im_start|>assistant\\n``.
        """
        ids = states.input_ids.tolist()
        start = len(ids) - 3
        if start < 0 or ids[start] != self.ids.im_start or ids[start + 1] != self.ids.assistant:
            raise InputError("the prompt must end with <|im_start|>assistant\\n to be spoken")
        t = self.talker.spec.tokens
        text = torch.cat(
            (
                self.talker.embed_thinker(states.embeds[start:].to(self._dtype())),
                self.text_track([t.tts_pad] * 4 + [t.tts_bos]),
            )
        )
        device = text.device
        codec = self.talker.embed_codec(
            torch.tensor(
                [t.codec_nothink, t.codec_think_bos, t.codec_think_eos, speaker_id, t.codec_pad],
                device=device,
            )  # fmt: skip
        )
        codec = torch.cat((torch.zeros(3, codec.shape[1], dtype=codec.dtype, device=device), codec))
        return text + codec, start


class Speaking:
    """One spoken reply in progress (see :meth:`OmniVoice.speak`).

    Feed the Thinker's reply tokens with :meth:`push`, marking the last one; each call returns
    the audio now final (``[n]`` float32 chunks at 24 kHz). :meth:`finish` runs the talker to
    its end of speech and closes the vocoder stream. :attr:`codes` holds the frames so far.
    """

    def __init__(  # noqa: PLR0913 - one reply's settings
        self,
        voice: OmniVoice,
        states: ThinkerStates,
        speaker_id: int,
        generator: torch.Generator | None,
        max_frames: int,
    ) -> None:
        self.voice = voice
        self.generator = generator
        self.max_frames = max_frames
        tokens = voice.talker.spec.tokens
        self._pad, self._eos = voice.text_track([tokens.tts_pad, tokens.tts_eos]).unbind(0)
        head, _ = voice.assistant_head(states, speaker_id)
        self._prompt = torch.cat((voice.user_part(states), head))
        self._trailing: list[torch.Tensor] = []
        self._tokens = 0
        self._ended = False
        self._state = None
        self._stepper: FrameStepper | None = None
        self._pending: torch.Tensor | None = None
        self.done = False
        self.codes: list[torch.Tensor] = []  # [K] per frame
        self._stream = voice.vocoder.streaming(1)
        self._stream.__enter__()
        self._open = True

    @torch.inference_mode()
    def push(self, token: int, last: bool = False) -> list[np.ndarray]:
        """Feed the Thinker's next reply token; ``last`` marks its final one."""
        if self._ended:
            raise InputError("the reply already ended")
        self._tokens += 1
        voice = self.voice
        if self._tokens == 1:
            t = voice.talker.spec.tokens
            first = voice.text_track([token])[0] + voice.talker.embed_codec(
                torch.tensor(t.codec_bos, device=self._pad.device)
            )
            prompt = torch.cat((self._prompt, first[None]))[None]
            self._state = voice.talker.start(prompt, prompt.shape[1] + self.max_frames + 1)
            self._stepper = FrameStepper(
                voice.talker, self._state, voice.generation, self.generator, voice.step
            )
            if last:
                # A one-token reply: the released pipeline has no text for the 9th position
                # then (its last token has no Thinker state); here it is spoken as written.
                self._trailing.append(self._eos)
        elif last:
            self._trailing.append(self._eos)  # the last token itself never reaches the talker
        else:
            self._trailing.append(voice.text_track([token])[0])
        self._ended = last
        return self._run()

    @torch.inference_mode()
    def finish(self) -> list[np.ndarray]:
        """The Thinker is done: speak to the end of speech; returns the remaining audio."""
        if not self._ended and self._tokens:
            self._trailing.append(self._eos)
        self._ended = True
        out = self._run() if self._state is not None else []
        self.close()
        return out

    def close(self) -> None:
        """Close the vocoder stream (also done by :meth:`finish`)."""
        if self._open:
            self._stream.__exit__(None, None, None)
            self._open = False

    def _run(self) -> list[np.ndarray]:
        """Frames as far as the text known so far allows."""
        out: list[np.ndarray] = []
        while not self.done and self._stepper is not None:
            if self._pending is not None:
                n = len(self.codes) - 1
                if n < len(self._trailing):
                    text = self._trailing[n]
                elif self._ended:
                    text = self._pad
                else:
                    break  # this frame's text token is not written yet
                self._stepper.advance(self._pending, text)
                self._pending = None
            if len(self.codes) >= self.max_frames:
                self.done = True
                break
            frame = self._stepper.sample()
            if frame is None:  # end of speech
                self.done = True
                break
            self.codes.append(frame[0].cpu())
            self._pending = frame
            chunk = self.voice.vocoder.push(frame[:, :, None])
            wav = chunk.wav[0, 0, : int(chunk.lengths[0])].float().cpu().numpy()
            if wav.size:
                out.append(wav)
        return out
