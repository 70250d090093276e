"""``ASR``: AuT encoder -> projector -> Qwen3 decoder -> text, from Qwen3-ASR folders.

Loads the released Qwen3-ASR checkpoints unchanged, in the original layout (``thinker.*``, as
published for the ``qwen-asr`` package) and in the transformers ``-hf`` layout
(``model.audio_tower``, ``model.multi_modal_projector``, ``model.language_model``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from omnispeech.audio import iter_quiet_segments, load_audio, log_mel_spectrogram, prepare_audio
from omnispeech.bundled import default_model
from omnispeech.checkpoint import CheckpointFolder, resolve_folder
from omnispeech.core import Decoder, DecoderCache
from omnispeech.core.quant import Int8Linear, quantize_linears_
from omnispeech.encoder import AudioEncoder
from omnispeech.errors import CheckpointError, EmptyAudioError, InputError
from omnispeech.pipelines.asr_align import AlignmentError
from omnispeech.pipelines.asr_batch import greedy_batch
from omnispeech.pipelines.asr_checkpoint import (
    ASRConfig,
    ASRParts,
    read_asr_folder,
    write_asr_folder,
)
from omnispeech.pipelines.asr_ctc import SAMPLE_RATE, CTCHeadMixin
from omnispeech.pipelines.asr_joint import JointDecoder
from omnispeech.pipelines.asr_prompt import (
    ASR_TEXT,
    Transcription,
    parse_answer,
    prompt_parts,
    resolve_language,
    token_budget,
)
from omnispeech.pipelines.asr_stream import ASRStream
from omnispeech.pipelines.tokenizer import load_tokenizer, special_id

# The reference front end zero-pads clips shorter than 0.5 s to 0.5 s.
MIN_SAMPLES = SAMPLE_RATE // 2


class ASR(CTCHeadMixin, nn.Module):
    """Speech recognition with a Qwen3-ASR checkpoint.

    Example::

        asr = ASR.from_pretrained("Qwen3-ASR-0.6B")
        print(asr.transcribe("talk.wav").text)

    Args:
        encoder: the AuT encoder with its projection into the decoder width.
        decoder: the Qwen3 text decoder.
        lm_head: output projection, or None when tied to the decoder's embeddings.
        tokenizer: the Qwen tokenizer (``tokenizers.Tokenizer``).
        config: end tokens and languages.
        ctc_head: the CTC classifier on the encoder's tokens (vocabulary + blank, blank
            last) that omnispeech's own models carry for timestamps and forced alignment;
            None for the released checkpoints, which have none.
    """

    def __init__(  # noqa: PLR0913 - the parts of the pipeline, each needed
        self,
        encoder: AudioEncoder,
        decoder: Decoder,
        lm_head: nn.Linear | None,
        tokenizer,
        config: ASRConfig,
        ctc_head: nn.Linear | None = None,
    ) -> None:
        super().__init__()
        if encoder.out_dim != decoder.cfg.hidden_size:
            raise CheckpointError(
                f"encoder output width {encoder.out_dim} != decoder width {decoder.cfg.hidden_size}"
            )
        self.encoder = encoder
        self.decoder = decoder
        self.lm_head = lm_head
        self.tokenizer = tokenizer
        self.config = config
        self.ctc_head = ctc_head
        self.audio_pad_id = special_id(tokenizer, "<|audio_pad|>")
        self.quantized: str | None = None  # "int8" after quantize_int8()

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        quantize: str | None = None,
        ctc_weight: float | None = None,
    ) -> ASR:
        """Load a Qwen3-ASR folder (original or ``-hf`` layout), one saved by omnispeech, or
        with no name the bundled model (every language of omnispeech's corpus, timestamps).

        Args:
            name_or_path: the folder, or None for the bundled model.
            dtype: weight and activation dtype.
            device: where the model runs.
            quantize: ``"int8"`` stores the text decoder's weights as int8 rows (see
                :meth:`quantize_int8`).
            ctc_weight: the CTC head's share of each decoding choice (see
                :attr:`ctc_weight`); None: the folder's own.

        Raises:
            CheckpointError: the folder is missing, not a Qwen3-ASR model, or its keys differ.
            TokenizerError: the folder has no usable tokenizer files.
            InputError: an unknown ``quantize`` value.
        """
        if quantize not in (None, "int8"):
            raise InputError(f"quantize must be None or 'int8', got {quantize!r}")
        if name_or_path is None:
            name_or_path = default_model("asr")
        folder = CheckpointFolder(resolve_folder(name_or_path))
        parts = read_asr_folder(folder, dtype)
        model = cls(
            parts.encoder,
            parts.decoder,
            parts.lm_head,
            load_tokenizer(folder.path),
            parts.config,
            parts.ctc_head,
        )
        model = model.to(device=device, dtype=dtype).eval()
        if quantize == "int8":
            model.quantize_int8()
        if ctc_weight is not None:
            model.ctc_weight = ctc_weight
        return model

    def quantize_int8(self) -> int:
        """Store the text decoder's weights as int8 rows (weight-only, per-row scales), with
        the talker's quantizer (:mod:`omnispeech.core.quant`).

        Decoding reads every decoder weight and the whole output head once per token, so its
        time is the time to read them: int8 reads a quarter of the float32 bytes. The head
        (tied to the embedding table or not, the largest matrix of the small models) gets
        its own int8 copy; the token embedding stays in floating point (a lookup reads one
        row). A float32 decoder computes in bfloat16 afterwards, because the fused int8 CPU
        kernel takes 16-bit activations; the audio encoder, run once per utterance, keeps its
        dtype. A quantized model cannot be saved. Returns the number of layers converted.
        """
        if self.quantized is not None:
            raise InputError(f"the model is already quantized ({self.quantized})")
        if self.decoder.norm.weight.dtype == torch.float32:
            self.decoder.to(torch.bfloat16)
        dtype = self.decoder.norm.weight.dtype
        count = quantize_linears_(self.decoder.layers, dtype)
        head = self.decoder.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        self.lm_head = Int8Linear.from_weight(head, None, dtype)
        self.quantized = "int8"
        return count + 1

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write the original Qwen3-ASR layout (``thinker.*``) with tokenizer files.

        Args:
            path: the folder (created).
            dtype: store floating tensors in this type (e.g. ``torch.bfloat16``, as the
                released checkpoints are); None keeps the modules' own.

        Raises:
            CheckpointError: the model is quantized (save the float model instead).
        """
        if self.quantized is not None:
            raise CheckpointError(
                f"a {self.quantized} model cannot be saved in the released layout; save the "
                "float model and quantize it when loading"
            )
        parts = ASRParts(self.encoder, self.decoder, self.lm_head, self.ctc_head, self.config)
        write_asr_folder(path, parts, self.audio_pad_id, self.tokenizer, dtype)

    # -- recognition --------------------------------------------------------------------------
    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder.logits(hidden) if self.lm_head is None else self.lm_head(hidden)

    def prompt_ids(
        self, num_audio_tokens: int, language: str | None, context: str = ""
    ) -> list[int]:
        """Token ids of the full prompt with ``num_audio_tokens`` audio placeholders."""
        head, tail = prompt_parts(context, language)
        enc = self.tokenizer.encode
        return (
            enc(head, add_special_tokens=False).ids
            + [self.audio_pad_id] * num_audio_tokens
            + enc(tail, add_special_tokens=False).ids
        )

    @torch.inference_mode()
    def generate(
        self,
        audio_tokens: torch.Tensor,
        language: str | None = None,
        context: str = "",
        max_new_tokens: int = 512,
        min_new_tokens: int = 0,
    ) -> list[int]:
        """Greedy decoding over one audio's encoder tokens.

        Args:
            audio_tokens: ``[N, D]`` encoder output (13 per second).
            language: forced language name (already resolved), or None to detect.
            context: text for the system turn (hot words, topic).
            max_new_tokens: most tokens to generate.
            min_new_tokens: end tokens are ignored before this many (benchmarks).

        Returns:
            generated ids, without the end token.
        """
        embeds = self._prompt_embeds(audio_tokens, language, context)
        cache = self.decoder.new_cache(1, embeds.shape[0] + max_new_tokens)
        joint = self.joint_decoder(audio_tokens, language is not None)
        hidden = self.decoder(embeds[None], cache)
        return self.greedy(hidden, cache, max_new_tokens, min_new_tokens, joint)

    def _prompt_embeds(
        self, audio_tokens: torch.Tensor, language: str | None, context: str
    ) -> torch.Tensor:
        """The embedded prompt ``[L, hidden]``: text tokens, with the audio's encoder tokens
        ``[N, D]`` at the audio placeholders."""
        ids = self.prompt_ids(audio_tokens.shape[0], language, context)
        ids_t = torch.tensor(ids, device=self.decoder.embed_tokens.weight.device)
        embeds = self.decoder.embed_tokens(ids_t)
        embeds[ids_t == self.audio_pad_id] = audio_tokens.to(embeds)
        return embeds

    def greedy(
        self,
        hidden: torch.Tensor,
        cache: DecoderCache,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        joint: JointDecoder | None = None,
    ) -> list[int]:
        """Greedy continuation after a prefill whose last hidden state is ``hidden[:, -1]``;
        with ``joint``, each token is chosen with the CTC head (see :meth:`joint_decoder`).

        Returns the new ids without the end token; ``cache`` holds them afterwards.
        """
        device = hidden.device
        out: list[int] = []
        eos = set(self.config.eos_token_ids)
        for step in range(max_new_tokens):
            logits = self._logits(hidden[:, -1])
            if joint is not None:
                token = joint.choose(logits[0], eos, allow_end=step >= min_new_tokens)
            else:
                if step < min_new_tokens:
                    logits[:, list(eos)] = float("-inf")
                token = int(logits.argmax(-1))
            if token in eos:
                break
            out.append(token)
            if step + 1 < max_new_tokens:
                hidden = self.decoder(
                    self.decoder.embed_tokens(torch.tensor([[token]], device=device)), cache
                )
        return out

    def transcribe_batch(
        self,
        audios: Sequence[str | Path | np.ndarray | torch.Tensor],
        sample_rate: int = SAMPLE_RATE,
        language: str | None = None,
        context: str = "",
        max_new_tokens: int = 512,
        timestamps: bool = False,
    ) -> list[Transcription]:
        """Transcribe independent utterances together: each decoding step reads the decoder's
        weights once for all of them. Each result equals :meth:`transcribe` of that audio
        alone (up to float rounding, see :mod:`omnispeech.pipelines.asr_batch`).

        Arguments are those of :meth:`transcribe`, applied to every utterance.

        Raises:
            AudioError: an unreadable, empty, silent or non-finite audio (which one is named).
            InputError: as :meth:`transcribe`.
        """
        forced = resolve_language(language, list(self.config.languages) or None)
        if timestamps:
            self.require_ctc()
        wavs = []
        for i, audio in enumerate(audios):
            wav = self._read(audio, sample_rate)
            if not np.any(wav):
                raise EmptyAudioError(f"audio {i} is silent (every sample is zero)")
            wavs.append(wav)
        tokens = [self._encode(wav) for wav in wavs]
        prompts = [self._prompt_embeds(t, forced, context) for t in tokens]
        budgets = [token_budget(wav.shape[0], max_new_tokens) for wav in wavs]
        joints = [self.joint_decoder(t, forced is not None) for t in tokens]
        eos = self.config.eos_token_ids
        ids = greedy_batch(self.decoder, self._logits, prompts, eos, budgets, joints)
        return [self._result(t, i, forced, timestamps) for t, i in zip(tokens, ids, strict=True)]

    def stream(
        self,
        language: str | None = None,
        context: str = "",
        unfixed_tokens: int | None = 5,
        max_seconds: float = 600.0,
    ) -> ASRStream:
        """A live transcription session (see :class:`ASRStream`); use it with ``with``."""
        return ASRStream(self, language, context, unfixed_tokens, max_seconds)

    def transcribe(
        self,
        audio: str | Path | np.ndarray | torch.Tensor,
        sample_rate: int = SAMPLE_RATE,
        language: str | None = None,
        context: str = "",
        max_new_tokens: int = 512,
        timestamps: bool = False,
    ) -> Transcription:
        """Transcribe one utterance held in memory or a short file (see :meth:`transcribe_file`
        for long recordings).

        Args:
            audio: a path, or samples ``[S]`` / ``[C, S]`` at ``sample_rate`` Hz.
            sample_rate: rate of in-memory samples (resampled to 16 kHz).
            language: code or name to force; None or ``auto`` to detect.
            context: optional system-turn text.
            max_new_tokens: most tokens per utterance (further capped at 32 + 20 per second
                of audio, which no real speech reaches).
            timestamps: also place each word in time (``Transcription.words``); needs a
                model with a CTC head (omnispeech's own).

        Raises:
            AudioError: unreadable, empty, silent or non-finite audio.
            InputError: an unsupported language, or timestamps from a model without a CTC
                head.
        """
        forced = resolve_language(language, list(self.config.languages) or None)
        if timestamps:
            self.require_ctc()
        wav = self._read(audio, sample_rate)
        return self._transcribe_wav(wav, forced, context, max_new_tokens, timestamps)

    @staticmethod
    def _read(audio: str | Path | np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
        if isinstance(audio, str | Path):
            return load_audio(audio, SAMPLE_RATE)
        return prepare_audio(audio, sample_rate, SAMPLE_RATE)

    def _encode(self, wav: np.ndarray) -> torch.Tensor:
        """Encoder tokens ``[N, D]`` of 16 kHz samples (padded to the reference's 0.5 s)."""
        if wav.shape[0] < MIN_SAMPLES:
            wav = np.pad(wav, (0, MIN_SAMPLES - wav.shape[0]))
        feats = log_mel_spectrogram(torch.from_numpy(wav), self.encoder.cfg.num_mel_bins)
        weight = self.decoder.embed_tokens.weight
        return self.encoder(feats[None].to(weight.device)).tokens[0]

    def _transcribe_wav(
        self,
        wav: np.ndarray,
        forced: str | None,
        context: str,
        max_new_tokens: int,
        timestamps: bool = False,
        offset: float = 0.0,
    ) -> Transcription:
        if not np.any(wav):
            raise EmptyAudioError(
                "the audio is silent (every sample is zero); nothing to transcribe"
            )
        max_new_tokens = token_budget(wav.shape[0], max_new_tokens)
        tokens = self._encode(wav)
        ids = self.generate(tokens, forced, context, max_new_tokens)
        return self._result(tokens, ids, forced, timestamps, offset)

    def _result(
        self,
        tokens: torch.Tensor,
        ids: list[int],
        forced: str | None,
        timestamps: bool,
        offset: float = 0.0,
    ) -> Transcription:
        """The transcription of generated ``ids`` (words placed in time with ``timestamps``)."""
        text, lang = parse_answer(self.tokenizer.decode(ids, skip_special_tokens=False), forced)
        words: tuple = ()
        if timestamps and text:
            # The transcript's own ids: after the <asr_text> marker when the model named the
            # language itself.
            marker = self.tokenizer.token_to_id(ASR_TEXT)
            spoken = ids[ids.index(marker) + 1 :] if marker in ids else ids
            try:
                words = self._align(tokens, spoken, check=False, offset=offset).words
            except AlignmentError:
                words = ()  # a transcript longer than the audio's steps has no timing
        return Transcription(text=text, language=lang, token_ids=tuple(ids), words=words)

    def transcribe_file(
        self,
        path: str | Path,
        language: str | None = None,
        context: str = "",
        segment_seconds: float = 30.0,
        progress: Callable[[float], None] | None = None,
        timestamps: bool = False,
    ) -> Transcription:
        """Transcribe a recording of any length without holding all of it in memory.

        The file is read block by block and cut into segments of at most ``segment_seconds``
        at the quietest 100 ms of each segment's last quarter (so cuts fall between words);
        each segment is encoded and decoded on its own, and the texts are joined.

        Args:
            path: audio file (wav/flac/ogg), any rate and channel count.
            language: code or name to force; None to detect (the first detected is reported).
            context: optional system-turn text.
            segment_seconds: longest segment, in seconds (>= 2).
            progress: called with the seconds of audio done after each segment.
            timestamps: also place each word in time, in seconds from the file's start
                (models with a CTC head).
        """
        if segment_seconds < 2:
            raise InputError(f"segment_seconds must be >= 2, got {segment_seconds}")
        forced = resolve_language(language, list(self.config.languages) or None)
        if timestamps:
            self.require_ctc()
        texts, languages, ids, words = [], [], [], []
        offset = 0.0
        for segment in iter_quiet_segments(path, segment_seconds, SAMPLE_RATE):
            if np.any(segment):
                result = self._transcribe_wav(
                    segment, forced, context, 512, timestamps=timestamps, offset=offset
                )
                if result.text:
                    texts.append(result.text)
                languages.append(result.language)
                ids.extend(result.token_ids)
                words.extend(result.words)
            offset += segment.shape[0] / SAMPLE_RATE
            if progress is not None:
                progress(segment.shape[0] / SAMPLE_RATE)
        if not languages:
            raise EmptyAudioError(f"{path}: the audio is silent (every sample is zero)")
        lang = next((x for x in languages if x), None)
        text = " ".join(texts)
        return Transcription(text=text, language=lang, token_ids=tuple(ids), words=tuple(words))


__all__ = ["ASR", "ASRConfig", "Transcription"]
