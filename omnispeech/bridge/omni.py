"""Qwen3-Omni end to end: the Thinker run by transformers, the speech side by omnispeech.

From one released folder: the Thinker's text model (transformers, :mod:`.thinker`), the AuT
audio encoder with its projector (ears), and the talker, code predictor and Code2Wav (voice).
Each part reads only its own tensors, so a folder without the talker's shards still chats in
text, and one without the Thinker's shards still serves the speech components alone.

Usage::

    omni = Omni.from_pretrained("Qwen3-Omni-30B-A3B-Instruct")
    for event in omni.chat("Tell me a joke."):            # or chat(audio=wav_16k)
        if isinstance(event, TextToken): ...               # the reply, token by token
        else: play(event.samples)                          # SpeechChunk, 24 kHz

The talker starts with the Thinker's first reply token and each audio chunk is yielded as
soon as its frame is made, while the Thinker is still writing.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from omnispeech.audio import log_mel_spectrogram
from omnispeech.bridge.ears import Ears, Listening, Prefill, prefill_text
from omnispeech.bridge.omni_voice import MAX_FRAMES, OmniVoice, ThinkerStates
from omnispeech.bridge.thinker import ChatIds, load_thinker
from omnispeech.checkpoint import CheckpointFolder, resolve_folder
from omnispeech.core.sampling import SamplingConfig, sample
from omnispeech.encoder import AudioEncoder
from omnispeech.errors import CheckpointError, InputError, TokenizerError
from omnispeech.pipelines.tokenizer import load_tokenizer
from omnispeech.talker import GenerationConfig, Talker
from omnispeech.vocoder import Code2Wav


@dataclasses.dataclass(frozen=True)
class TextToken:
    """One token of the Thinker's reply."""

    id: int


@dataclasses.dataclass(frozen=True)
class SpeechChunk:
    """Reply audio made final: ``samples`` ``[n]`` float32 at 24 kHz."""

    samples: np.ndarray


class SpeechUnavailableWarning(UserWarning):
    """Speech was asked of a model that has no talker: the reply is text only."""


class Omni:
    """A Thinker (any causal LM of the Qwen3-Omni layout) with ears and a voice.

    Args:
        thinker: the Thinker's text model (a transformers causal LM).
        ids: the chat template's ids.
        encoder: the audio encoder, or None for a model without an audio tower.
        voice: the talker side, or None for a model without one (text out only).
        tokenizer: the text tokenizer, or None (then only token ids go in and out).
        sampling: how the Thinker picks tokens (default greedy).
    """

    def __init__(  # noqa: PLR0913 - the parts of the whole model
        self,
        thinker: nn.Module,
        ids: ChatIds,
        encoder: AudioEncoder | None = None,
        voice: OmniVoice | None = None,
        tokenizer: Any = None,
        sampling: SamplingConfig | None = None,
    ) -> None:
        vocab = thinker.get_input_embeddings().num_embeddings
        wrong = {k: v for k, v in dataclasses.asdict(ids).items() if not 0 <= v < vocab}
        if wrong:
            raise CheckpointError(
                f"chat-template ids outside the Thinker's {vocab}-token vocabulary: {wrong}"
            )
        self.thinker = thinker
        self.ids = ids
        self.ears = None if encoder is None else Ears(encoder, thinker, ids.audio)
        self.voice = voice
        self.tokenizer = tokenizer
        self.sampling = sampling or SamplingConfig(do_sample=False)
        self._warned = False

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        speech: bool = True,
    ) -> Omni:
        """Load a Qwen3-Omni folder (Instruct, or the talker-less Thinking / Captioner).

        ``speech`` False skips the talker and Code2Wav even when present.

        Raises:
            CheckpointError: not a Qwen3-Omni folder, or missing Thinker tensors.
            DependencyError: transformers (the ``omni`` extra) is not installed.
        """
        path = resolve_folder(name_or_path)
        folder = CheckpointFolder(path)
        # A talker-less release (-Thinking, -Captioner) still writes a default talker config.
        with_voice = (
            speech
            and folder.config.get("enable_audio_output", True)
            and folder.has_prefix("talker.")
            and folder.has_prefix("code2wav.")
        )
        if with_voice:
            _check_widths(folder.config)
        thinker = load_thinker(folder, dtype, device)
        ids = ChatIds.from_config(folder.config)
        audio_config = (folder.config.get("thinker_config") or {}).get("audio_config")
        encoder = None
        if audio_config and folder.has_prefix("thinker.audio_tower."):
            encoder = AudioEncoder.from_pretrained(path, dtype=dtype, device=device)
        voice = None
        if with_voice:
            talker = Talker.from_pretrained(path, dtype=dtype, device=device)
            # Code2Wav runs in float32 whatever the model dtype (its output is audio).
            vocoder = Code2Wav.from_pretrained(path, device=device)
            settings = _settings(path)
            voice = OmniVoice(
                talker,
                vocoder,
                thinker.get_input_embeddings(),
                ids,
                GenerationConfig.qwen3_omni(settings),
            )
        try:
            tokenizer = load_tokenizer(path)
        except TokenizerError:
            tokenizer = None
        sampling = _thinker_sampling(_settings(path))
        return cls(thinker, ids, encoder, voice, tokenizer, sampling)

    # -- prompts --------------------------------------------------------------------------------
    @property
    def speaks(self) -> bool:
        """Whether the model has a talker (False: text out only)."""
        return self.voice is not None

    @property
    def hears(self) -> bool:
        """Whether the model has an audio tower."""
        return self.ears is not None

    def _hidden_layer(self) -> int:
        return -1 if self.voice is None else int(self.voice.talker.spec.accept_hidden_layer)

    def prompt(self, text: str | None, audio: bool = False) -> tuple[list[int], list[int]]:
        """The user turn and the assistant start, split where the audio tokens go:
        ``(prefix, suffix)`` ids; without audio, prefix + suffix is the whole prompt.

        Raises:
            InputError: no text and no audio; no tokenizer for text.
        """
        if not audio and not (text and text.strip()):
            raise InputError("nothing to answer: give text or audio")
        ids = self.ids

        def enc(s: str) -> list[int]:
            if self.tokenizer is None:
                raise InputError("this folder has no tokenizer: give token ids instead of text")
            return self.tokenizer.encode(s, add_special_tokens=False).ids

        # The role words are single tokens whose ids the config names (user 872, assistant
        # 77091 in the released vocabulary); the talker finds the turns by them.
        newline = enc("\n")
        prefix = [ids.im_start, ids.user, *newline]
        suffix: list[int] = []
        if audio:
            prefix.append(ids.audio_start)
            suffix.append(ids.audio_end)
        if text and text.strip():
            suffix += enc(text.strip())
        suffix += [ids.im_end, *newline, ids.im_start, ids.assistant, *newline]
        return prefix, suffix

    def prefill(
        self, input_ids: torch.Tensor | list[int], audio: np.ndarray | torch.Tensor | None = None
    ) -> Prefill:
        """Run the Thinker over a prompt with one ``<|audio_pad|>`` per audio token.

        Args:
            input_ids: ``[L]`` or ``[1, L]`` prompt ids.
            audio: 16 kHz mono samples ``[S]``, or log-mel features ``[1, 128, T]``; None for
                a text prompt.

        Raises:
            InputError: audio for a model without an audio tower, or a placeholder count that
                differs from the audio's token count.
        """
        ids = torch.as_tensor(input_ids, dtype=torch.long).reshape(1, -1)
        layer = self._hidden_layer()
        if audio is None:
            return prefill_text(self.thinker, ids, layer)
        ears = self._ears()
        feats = torch.as_tensor(audio)
        if feats.dim() == 1:
            feats = log_mel_spectrogram(feats.float())[None]
        with torch.inference_mode():
            tokens = ears.encoder(feats).tokens[0]
        return ears.prefill(ids, tokens, layer)

    def listen(self, prefix_ids: torch.Tensor | list[int]) -> Listening:
        """A prefill that runs while the audio streams in (see :meth:`Ears.listen`)."""
        prefix = torch.as_tensor(prefix_ids, dtype=torch.long).reshape(1, -1)
        return self._ears().listen(prefix, self._hidden_layer())

    def _ears(self) -> Ears:
        if self.ears is None:
            raise InputError("this model has no audio tower: it takes text only")
        return self.ears

    # -- replies --------------------------------------------------------------------------------
    @torch.inference_mode()
    def respond(  # noqa: PLR0913 - the reply's settings
        self,
        prefill: Prefill,
        speaker: str | None = None,
        max_new_tokens: int = 1024,
        max_frames: int = MAX_FRAMES,
        seed: int | None = None,
        speech: bool = True,
    ) -> Iterator[TextToken | SpeechChunk]:
        """The reply to a prefilled prompt: text tokens, and speech chunks as they are made.

        The Thinker stops at ``<|im_end|>`` or after ``max_new_tokens``; the talker at its
        end of speech or after ``max_frames`` frames (80 ms each).
        """
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        seed = secrets.randbits(63) if seed is None else seed
        text_gen = torch.Generator().manual_seed(seed)
        speaking = None
        if speech and self.voice is None and not self._warned:
            warnings.warn(
                "this model has no talker: the reply is text only", SpeechUnavailableWarning,
                stacklevel=2,
            )  # fmt: skip
            self._warned = True
        if speech and self.voice is not None:
            states = ThinkerStates(
                prefill.input_ids[0],
                prefill.embeds[0],
                None if prefill.hidden is None else prefill.hidden[0],
            )
            speech_gen = torch.Generator().manual_seed(seed + 1)
            speaking = self.voice.speak(states, speaker, speech_gen, max_frames)
        logits, cache = prefill.logits, prefill.cache
        try:
            for step in range(max_new_tokens):
                token = int(sample(logits, self.sampling, text_gen)[0])
                last = token == self.ids.im_end or step == max_new_tokens - 1
                yield TextToken(token)
                if speaking is not None:
                    yield from (SpeechChunk(w) for w in speaking.push(token, last))
                if last:
                    break
                device = logits.device
                out = self.thinker(
                    input_ids=torch.tensor([[token]], device=device),
                    past_key_values=cache,
                    use_cache=True,
                )
                logits, cache = out.logits[:, -1], out.past_key_values
            if speaking is not None:
                yield from (SpeechChunk(w) for w in speaking.finish())
        finally:
            if speaking is not None:
                speaking.close()

    def chat(
        self,
        text: str | None = None,
        audio: np.ndarray | torch.Tensor | None = None,
        **options: Any,
    ) -> Iterator[TextToken | SpeechChunk]:
        """Answer ``text`` and/or ``audio`` (16 kHz samples ``[S]``); options as
        :meth:`respond`."""
        prefix, suffix = self.prompt(text, audio is not None)
        if audio is None:
            return self.respond(self.prefill(prefix + suffix), **options)
        wav = torch.as_tensor(audio, dtype=torch.float32)
        n = self._ears().encoder.cfg.num_tokens(wav.shape[-1] // 160)
        ids = prefix + [self.ids.audio] * n + suffix
        return self.respond(self.prefill(ids, wav), **options)


def _check_widths(cfg: dict[str, Any]) -> None:
    """Refuse, before loading anything, a talker made for a Thinker of another width."""
    talker = cfg.get("talker_config")
    thinker = (cfg.get("thinker_config") or {}).get("text_config") or {}
    if not isinstance(talker, dict) or "thinker_hidden_size" not in talker:
        return
    want, have = talker["thinker_hidden_size"], thinker.get("hidden_size")
    if have is not None and have != want:
        raise CheckpointError(
            f"the Thinker is {have} wide but the talker takes {want}-wide Thinker states: "
            "the config joins parts of different models"
        )


def _settings(path: Path) -> dict[str, Any]:
    """``generation_config.json`` of the folder ({} when absent or unreadable)."""
    file = path / "generation_config.json"
    try:
        data = json.loads(file.read_text()) if file.is_file() else {}
    except (OSError, ValueError):
        data = {}
    return data if isinstance(data, dict) else {}


def _thinker_sampling(settings: dict[str, Any]) -> SamplingConfig:
    """The Thinker's sampling from the folder's ``generation_config.json`` (greedy if unset)."""
    if not settings.get("do_sample", False):
        return SamplingConfig(do_sample=False)
    return SamplingConfig(
        do_sample=True,
        temperature=float(settings.get("temperature", 1.0)),
        top_k=int(settings.get("top_k", 50)),
        top_p=float(settings.get("top_p", 1.0)),
    )
