"""What an ASR model with a CTC head adds: forced alignment, and joint CTC/attention decoding.

omnispeech's own recognisers carry a CTC classifier on the encoder's tokens (the released
Qwen3-ASR checkpoints have none). :class:`CTCHeadMixin` holds the pipeline's methods that use
it, apart from the decoding loop itself; :class:`omnispeech.pipelines.asr.ASR` inherits them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from omnispeech.errors import EmptyAudioError, InputError
from omnispeech.pipelines.asr_align import Alignment, token_pieces
from omnispeech.pipelines.asr_align import align as align_tokens
from omnispeech.pipelines.asr_checkpoint import ASRConfig
from omnispeech.pipelines.asr_joint import DEFAULT_CTC_WEIGHT, JointDecoder
from omnispeech.pipelines.asr_prompt import ASR_TEXT

SAMPLE_RATE = 16_000


class CTCHeadMixin:
    """The CTC head's uses in :class:`~omnispeech.pipelines.asr.ASR` (which provides the
    attributes annotated here)."""

    ctc_head: nn.Linear | None
    config: ASRConfig
    tokenizer: Any
    _read: Callable[[str | Path | np.ndarray | torch.Tensor, int], np.ndarray]
    _encode: Callable[[np.ndarray], torch.Tensor]

    @property
    def ctc_weight(self) -> float:
        """The CTC head's share ``w`` of each decoding choice, in [0, 1] (joint CTC/attention
        decoding, :mod:`omnispeech.pipelines.asr_joint`). 0: the decoder alone, as for the
        released checkpoints (they have no CTC head); a folder with a head that declares no
        weight gets ``DEFAULT_CTC_WEIGHT``. Setting it changes what :meth:`save_pretrained`
        writes.

        Raises (on setting):
            InputError: a value outside [0, 1], or above 0 for a model without a CTC head.
        """
        if self.ctc_head is None:
            return 0.0
        declared = self.config.ctc_weight
        return DEFAULT_CTC_WEIGHT if declared is None else declared

    @ctc_weight.setter
    def ctc_weight(self, value: float) -> None:
        if not 0 <= value <= 1:
            raise InputError(f"ctc_weight must lie in [0, 1], got {value}")
        if value > 0 and self.ctc_head is None:
            raise InputError("this model has no CTC head, so ctc_weight must be 0")
        self.config = dataclasses.replace(self.config, ctc_weight=float(value))

    def joint_decoder(self, audio_tokens: torch.Tensor, in_text: bool) -> JointDecoder | None:
        """The CTC side of joint decoding for encoder tokens ``[N, D]`` (None when
        :attr:`ctc_weight` is 0); ``in_text``: the prompt ends at the transcript's start (a
        forced language)."""
        log_probs = self.ctc_log_probs(audio_tokens)
        if log_probs is None:
            return None
        marker = self.tokenizer.token_to_id(ASR_TEXT)
        return JointDecoder(log_probs, self.ctc_weight, marker, in_text)

    def ctc_log_probs(self, audio_tokens: torch.Tensor) -> np.ndarray | None:
        """``[N, V + 1]`` CTC log-probabilities of encoder tokens ``[N, D]`` for joint
        decoding; None when :attr:`ctc_weight` is 0."""
        if self.ctc_weight == 0 or self.ctc_head is None:
            return None
        return torch.log_softmax(self.ctc_head(audio_tokens).float(), -1).detach().cpu().numpy()

    def align(
        self,
        audio: str | Path | np.ndarray | torch.Tensor,
        text: str,
        sample_rate: int = SAMPLE_RATE,
        check: bool = True,
    ) -> Alignment:
        """Forced alignment: the word and token boundaries of a known transcript.

        Args:
            audio: a path, or samples ``[S]`` / ``[C, S]`` at ``sample_rate`` Hz (one
                utterance, up to a few minutes).
            text: what the audio says.
            sample_rate: rate of in-memory samples.
            check: refuse a transcript that does not match the audio (False: return the
                alignment anyway; its ``gap`` says how well the text fits).

        Raises:
            AlignmentError: the text does not match the audio, or is too long for it.
            InputError: empty text, or a model without a CTC head.
        """
        self.require_ctc()
        if not text.strip():
            raise InputError("the transcript is empty; nothing to align")
        wav = self._read(audio, sample_rate)
        if not np.any(wav):
            raise EmptyAudioError("the audio is silent (every sample is zero); nothing to align")
        ids = self.tokenizer.encode(text.strip(), add_special_tokens=False).ids
        return self._align(self._encode(wav), ids, check=check)

    def require_ctc(self) -> None:
        """Raise :class:`InputError` unless the model can give timestamps (has a CTC head)."""
        if self.ctc_head is None:
            raise InputError(
                "this model has no CTC head, so it cannot give timestamps or align text; "
                "use omnispeech's bundled model (no --model) or one trained by `train asr`"
            )

    @torch.inference_mode()
    def _align(
        self, tokens: torch.Tensor, ids: list[int], check: bool, offset: float = 0.0
    ) -> Alignment:
        assert self.ctc_head is not None
        log_probs = torch.log_softmax(self.ctc_head(tokens).float(), -1).cpu().numpy()
        pieces, starts = token_pieces(self.tokenizer, ids)
        blank = self.ctc_head.out_features - 1
        return align_tokens(log_probs, ids, pieces, blank, starts, offset, check=check)


__all__ = ["CTCHeadMixin"]
