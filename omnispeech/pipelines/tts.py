"""Text to speech with voice cloning: talker + MTP -> streaming Code2Wav.

One Qwen3-TTS folder holds everything: ``config.json`` + safetensors (``talker.*`` and, for
Base models, ``speaker_encoder.*``), the Qwen tokenizer files, ``speech_tokenizer/`` (the
12 Hz codec: encoder for reference clips, Code2Wav for output) and ``generation_config.json``.
A folder may instead declare a phoneme text front end in ``text_frontend.json`` (see
:mod:`omnispeech.pipelines.tts_frontend`); without one, text is read by the BPE tokenizer.

Usage::

    tts = TTS.from_pretrained("Qwen3-TTS-12Hz-0.6B-Base")
    voice = tts.voice("sample.wav", ref_text="what the sample says")   # in-context cloning
    wav = tts.synthesize("Hello there.", voice, seed=0)                 # [S] float32, 24 kHz
    for chunk in tts.stream(llm_text_pieces, voice, seed=0):            # first chunk after
        play(chunk)                                                     # the first frame

``stream`` and ``synthesize`` give the same samples for the same seed. Text arrives whole or in
pieces (a string or any iterable of strings); it is split into utterances of at most
``max_segment_tokens`` tokens at sentence ends (see :mod:`omnispeech.pipelines.tts_text`).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from omnispeech.audio import load_audio, prepare_audio
from omnispeech.bundled import default_model
from omnispeech.checkpoint import resolve_folder
from omnispeech.errors import CheckpointError, InputError
from omnispeech.interleave import RatePolicy, SingleStreamPolicy
from omnispeech.pipelines.codec import Codec
from omnispeech.pipelines.tts_batch import frames_batch
from omnispeech.pipelines.tts_folder import load_parts, save_parts
from omnispeech.pipelines.tts_frontend import BpeFrontend, TextFrontend
from omnispeech.pipelines.tts_generation import check_guidance
from omnispeech.pipelines.tts_loop import SynthesisRequest, frames, stream_audio
from omnispeech.pipelines.tts_prompt import ARRANGEMENTS, VoicePrompt
from omnispeech.talker import GenerationConfig, SpeakerContrast, SpeakerEncoder, Talker
from omnispeech.talker.contrast import check_strength
from omnispeech.talker.stepper import default_step

# Reference clips: the released models were trained on clips of a few seconds, and users report
# drift beyond ~20 s. (Too short or silent clips are refused by the speaker encoder.)
MAX_REFERENCE_SECONDS = 30.0


@dataclasses.dataclass
class TTSOptions:
    """Per-call settings of :meth:`TTS.synthesize` / :meth:`TTS.stream`.

    Attributes:
        language: a language of the checkpoint (``TTS.languages``) or ``auto``; with a
            phoneme front end it also picks the espeak-ng voice that reads the text.
        seed: sampling seed (None draws one; :attr:`TTS.last_seed` tells which).
        speed: speech speed control for the text feed (> 1 faster, < 1 slower; 1 = as
            trained). With the released models, text already enters at the fastest rate the
            arrangement allows, so values above 1 change nothing there.
        arrangement: ``stream`` (text enters one token per frame) or ``full`` (all text in
            the prompt first); None follows the released wrappers: ``full`` for built-in
            speakers, ``stream`` for cloned voices. Single-stream models take none (or
            ``single``): they have one arrangement.
        generation: sampling settings (default: the checkpoint's).
        instruct: a style or voice description for models trained to follow one (1.7B
            CustomVoice and VoiceDesign); other models were not trained with it.
    """

    language: str = "auto"
    seed: int | None = None
    speed: float = 1.0
    arrangement: str | None = None
    generation: GenerationConfig | None = None
    instruct: str | None = None


class TTS:
    """Talker + code predictor + codec, with voice cloning.

    Args:
        talker: a Qwen3-TTS talker with its code predictor.
        codec: the 12 Hz speech codec (reference clips in, audio out).
        tokenizer: the Qwen text tokenizer, or a text front end (e.g.
            :class:`~omnispeech.pipelines.tts_frontend.PhonemeFrontend`).
        speaker_encoder: the ECAPA speaker encoder (Base models), or None.
        generation: default sampling settings.
        max_segment_tokens: most text tokens per utterance; longer text is split.
        single: the policy of a talker trained on the single stream (text and frames at
            separate positions, see :mod:`omnispeech.pipelines.tts_single`); None for the
            released dual track.
        speaker_contrast: how cloned speaker vectors are pushed from the training voices'
            centre (see :mod:`omnispeech.talker.contrast`); None leaves them as encoded. The
            attribute of the same name may be changed (or set to None) between voices.
        guidance_dropout: the share of unconditioned sequences the single-stream talker
            learnt (``data.guidance_dropout``); 0 refuses guidance above 1.
    """

    def __init__(  # noqa: PLR0913 - the pipeline's parts
        self,
        talker: Talker,
        codec: Codec,
        tokenizer: Tokenizer | TextFrontend,
        speaker_encoder: SpeakerEncoder | None = None,
        generation: GenerationConfig | None = None,
        max_segment_tokens: int = 150,
        single: SingleStreamPolicy | None = None,
        speaker_contrast: SpeakerContrast | None = None,
        guidance_dropout: float = 0.0,
    ) -> None:
        if talker.spec.family != "qwen3_tts":
            raise CheckpointError(
                "this is a Qwen3-Omni talker: it speaks Thinker states, not text; "
                "use a Qwen3-TTS checkpoint for text to speech"
            )
        if codec.decoder.cfg.num_quantizers != talker.num_code_groups:
            raise CheckpointError(
                f"the talker makes {talker.num_code_groups} codebooks per frame but the codec "
                f"decodes {codec.decoder.cfg.num_quantizers}"
            )
        frontend = tokenizer if isinstance(tokenizer, TextFrontend) else BpeFrontend(tokenizer)
        if frontend.vocab_size > talker.spec.talker.text_vocab_size:
            raise CheckpointError(
                f"the tokenizer has {frontend.vocab_size} tokens but the talker embeds "
                f"only {talker.spec.talker.text_vocab_size}: tokenizer and model do not match"
            )
        frontend.check(talker.spec.tokens)
        self.talker = talker
        self.codec = codec
        self.frontend = frontend
        self.speaker_encoder = speaker_encoder
        self.generation = generation or GenerationConfig()
        self.max_segment_tokens = max_segment_tokens
        self.single = single
        self.speaker_contrast = speaker_contrast
        self.guidance_dropout = guidance_dropout if single is not None else 0.0
        self.role_ids = frontend.role_ids
        self.last_seed: int | None = None
        self.last_seeds: list[int] = []  # of the last codes_batch / synthesize_batch
        # How frames are stepped: the reference loop, or on a CUDA GPU the fixed-shape step
        # replayed as CUDA graphs; "static" runs that step eagerly (see talker.stepper).
        self.step = default_step(talker)
        self._source: Path | None = None

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        quantize: str | None = None,
    ) -> TTS:
        """Load a Qwen3-TTS folder (or one written by :meth:`save_pretrained`), or with no name
        the bundled voice-cloning model.

        Args:
            name_or_path: the model folder, or None for the bundled model.
            dtype: talker and speaker-encoder dtype (the codec always runs in float32).
            device: where the models run.
            quantize: ``"int8"`` stores the talker's per-frame weights (decoder layers, codec
                head, code predictor) as int8 (about 4x fewer bytes to read per frame); it
                computes in bfloat16 when ``dtype`` is float32, because the fused int8 kernel
                takes 16-bit activations. ``"int4"`` stores them in 4 bits with a scale and
                offset per 64 input columns (about 6x fewer bytes than float32) and keeps
                ``dtype`` (omnispeech's int4 kernel runs float32 activations as fast as
                16-bit ones, see :mod:`omnispeech.kernels.numba_int4`; with float32 a
                stream's talker step and its code predictor's frame run as one kernel call
                each).

        Raises:
            CheckpointError: missing parts (tokenizer, ``speech_tokenizer/``) or wrong kind.
            InputError: an unknown ``quantize`` value.
        """
        if name_or_path is None:
            name_or_path = default_model("tts")
        path = resolve_folder(name_or_path)
        tts = cls(**load_parts(path, dtype, device, quantize))
        tts._source = path
        return tts

    def save_pretrained(self, path: str | Path) -> None:
        """Write a Qwen3-TTS-layout folder: weights, config, text front end (tokenizer or
        phoneme declaration), codec, sampling."""
        save_parts(self, Path(path))

    # -- what the model knows -------------------------------------------------------------------
    @property
    def tokenizer(self) -> Tokenizer | None:
        """The BPE tokenizer of a model that reads text as BPE (None with phonemes)."""
        return self.frontend.tokenizer if isinstance(self.frontend, BpeFrontend) else None

    @property
    def sample_rate(self) -> int:
        """Output samples per second (24000)."""
        return self.codec.sample_rate

    @property
    def languages(self) -> list[str]:
        """Languages for ``language=`` (plus ``auto``); dialects come with their speakers."""
        names = self.talker.spec.tokens.languages
        return ["auto", *sorted(k for k in names if "dialect" not in k)]

    @property
    def speakers(self) -> list[str]:
        """Built-in speakers (CustomVoice models; empty for Base models)."""
        return sorted(self.talker.spec.tokens.speakers)

    # -- voices ---------------------------------------------------------------------------------
    def set_speaker_contrast(self, strength: float) -> None:
        """Push the speaker vectors of voices cloned from now on ``strength`` times as far from
        the training voices' centre as the encoder puts them (1 = as encoded).

        Raises:
            InputError: a strength that is not a number above 0, or one other than 1 for a
                model whose folder has no speaker centre (every released Qwen3-TTS model).
        """
        strength = check_strength(strength)
        if self.speaker_contrast is None:
            if strength != 1.0:
                raise InputError(
                    "this model has no speaker centre to push voices from (no speaker_contrast "
                    "in its folder); only strength 1 applies"
                )
            return
        self.speaker_contrast = self.speaker_contrast.with_strength(strength)

    def set_guidance(self, scale: float) -> None:
        """Sample from now on with classifier-free guidance of this ``scale`` (1 = none; see
        :class:`~omnispeech.talker.GenerationConfig`): each frame then costs two talker
        passes, one of them without the text and the voice.

        Raises:
            InputError: a scale outside [1, 20], or one above 1 for a model whose talker never
                learnt unconditioned sequences (the released ones, and the bundled voice).
        """
        scale = check_guidance(scale, self.guidance_dropout > 0)
        self.generation = dataclasses.replace(self.generation, guidance=scale)

    def voice(
        self,
        ref_audio: str | Path | np.ndarray | torch.Tensor | None = None,
        ref_text: str | None = None,
        sample_rate: int | None = None,
        speaker: str | None = None,
        language: str = "auto",
    ) -> VoicePrompt:
        """A reusable voice from a reference clip, or a built-in speaker.

        With ``ref_text`` (the clip's transcript) the clip's codes join the prompt (in-context
        cloning, the closest imitation); without it only its speaker vector does. A model
        with a :attr:`speaker_contrast` pushes the vector from its training voices' centre
        first.

        Args:
            ref_audio: a file, or samples at ``sample_rate``.
            ref_text: transcript of the clip for in-context cloning.
            sample_rate: rate of in-memory samples (Hz).
            speaker: a built-in speaker name instead of a clip.
            language: the language of ``ref_text``, for models that read phonemes (which
                espeak-ng voice reads it); BPE models read any language as written.

        Raises:
            InputError: neither or both of a clip and a speaker; cloning with a model that
                has no speaker encoder; an empty transcript.
            EmptyAudioError: a clip shorter than 1 s or silent.
        """
        if (ref_audio is None) == (speaker is None):
            raise InputError("give either a reference clip or a built-in speaker name")
        if speaker is not None:
            if speaker.lower() not in self.talker.spec.tokens.speakers:
                known = ", ".join(self.speakers) or "none (this is a cloning model)"
                raise InputError(f"unknown speaker {speaker!r}; built-in speakers: {known}")
            return VoicePrompt(speaker_id=speaker)
        if self.speaker_encoder is None:
            raise InputError("this model cannot clone voices (no speaker encoder)")
        rate = self.sample_rate
        if isinstance(ref_audio, str | Path):
            wav = load_audio(ref_audio, rate)
        else:
            if sample_rate is None:
                raise InputError("in-memory reference audio needs its sample_rate (Hz)")
            wav = prepare_audio(ref_audio, sample_rate, rate)
        seconds = len(wav) / rate
        if seconds > MAX_REFERENCE_SECONDS:
            raise InputError(
                f"reference clip too long: {seconds:.1f} s; cut it to at most "
                f"{MAX_REFERENCE_SECONDS:g} s (3-15 s of clean speech works best)"
            )
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        with torch.inference_mode():
            # Refuses clips under 1 s and silent ones, before anything else runs on them.
            vector = self.speaker_encoder.embed(x)[0]
        if self.speaker_contrast is not None:
            vector = self.speaker_contrast.apply(vector)
        if ref_text is None:
            return VoicePrompt(speaker=vector)
        ids = self.frontend.encode(ref_text.strip(), language)
        if not ids:
            raise InputError("the reference transcript is empty; omit it for x-vector cloning")
        device = next(self.codec.encoder.parameters()).device
        with torch.inference_mode():
            codes, n = self.codec.encode(x[None, None].to(device))
        return VoicePrompt(speaker=vector, ref_codes=codes[0, :, : int(n[0])], ref_text_ids=ids)

    # -- synthesis ------------------------------------------------------------------------------
    def _request(
        self, text: str | Iterable[str], voice: VoicePrompt | None, options: TTSOptions
    ) -> SynthesisRequest:
        voice = voice or VoicePrompt()
        arrangement = options.arrangement
        if self.single is not None and arrangement not in (None, "single"):
            raise InputError("this model was trained on the single stream: leave arrangement out")
        if arrangement is None:
            arrangement = "full" if voice.speaker_id is not None else "stream"
        if arrangement not in ARRANGEMENTS and self.single is None:
            raise InputError(f"arrangement must be one of {ARRANGEMENTS}, got {arrangement!r}")
        if not options.speed > 0:
            raise InputError(f"speed must be > 0, got {options.speed}")
        generation = options.generation or self.generation
        check_guidance(generation.guidance, self.guidance_dropout > 0)
        if isinstance(text, str) and not text.strip():
            raise InputError("nothing to say: the text is empty")
        if isinstance(text, str):
            # A whole text is checked whole: a word the front end cannot read in the third
            # sentence fails the request before its first audio, not in the middle of it.
            self.frontend.check_text(text, options.language)
        pieces = [text] if isinstance(text, str) else text
        seed = options.seed if options.seed is not None else secrets.randbits(63)
        if not 0 <= seed < 2**64:  # what torch.Generator.manual_seed takes
            raise InputError(f"seed must be between 0 and 2**64 - 1, got {seed}")
        self.last_seed = seed
        device = self.talker.codec_head.weight.device
        generator = torch.Generator(device=device).manual_seed(seed)
        policy = RatePolicy.released(streaming_text=arrangement == "stream")
        policy = dataclasses.replace(policy, speed=options.speed)
        feed = self.frontend.feed(self.max_segment_tokens, options.language)
        return SynthesisRequest(
            talker=self.talker,
            role_ids=self.role_ids,
            feed=feed,
            pieces=iter(pieces),
            voice=voice,
            language=options.language,
            policy=policy,
            arrangement=arrangement,
            generation=generation,
            generator=generator,
            instruct_ids=self._instruct_ids(options.instruct),
            step=self.step if self.single is None else "eager",
            single=None if self.single is None else self.single.replace(speed=options.speed),
            seconds_per_token=self.frontend.guard_seconds_per_token,
            frame_rate=self.codec.frame_rate,
        )

    def _instruct_ids(self, instruct: str | None) -> list[int] | None:
        if instruct is None or not instruct.strip():
            return None  # an empty instruction means none, as in the released wrapper
        return self.frontend.instruct_ids(instruct.strip())

    def codes(
        self, text: str | Iterable[str], voice: VoicePrompt | None = None, **options
    ) -> torch.Tensor:
        """Generate the codes ``[K, T]`` (int64) of the speech only (no reference frames)."""
        request = self._request(text, voice, TTSOptions(**options))
        out = [f for f in frames(request)]
        if not out:
            raise InputError("nothing to say: the text is empty")
        return torch.stack(out, dim=1).cpu()

    def synthesize(
        self, text: str | Iterable[str], voice: VoicePrompt | None = None, **options
    ) -> np.ndarray:
        """Speech for ``text`` -> ``[S]`` float32 samples at :attr:`sample_rate`.

        Keyword options are the fields of :class:`TTSOptions`.
        """
        return self._decode(self.codes(text, voice, **options), voice)

    def codes_batch(
        self,
        texts: Sequence[str],
        voices: Sequence[VoicePrompt | None] | None = None,
        seeds: Sequence[int | None] | None = None,
        **options,
    ) -> list[torch.Tensor]:
        """Codes of several independent requests generated together (see
        :mod:`omnispeech.pipelines.tts_batch`): per request ``[K, T_b]`` int64, the codes
        :meth:`codes` gives for that text, voice and seed alone.

        Args:
            texts: one text per request.
            voices: one voice (or None) per request; None for none at all.
            seeds: one seed (or None to draw one) per request; :attr:`last_seeds` tells which.
            options: the other fields of :class:`TTSOptions`, shared by all requests.

        Raises:
            InputError: mismatched list lengths, an empty text, or the options of
                :meth:`codes`.
        """
        n = len(texts)
        voices = list(voices) if voices is not None else [None] * n
        seeds = list(seeds) if seeds is not None else [None] * n
        if len(voices) != n or len(seeds) != n:
            raise InputError(f"{n} texts need {n} voices and {n} seeds")
        if "seed" in options:
            raise InputError("give per-request seeds as seeds=[...]")
        requests = []
        for text, voice, seed in zip(texts, voices, seeds, strict=True):
            if not isinstance(text, str):
                raise InputError(f"each text must be a str, got {type(text).__name__}")
            requests.append(self._request(text, voice, TTSOptions(seed=seed, **options)))
        self.last_seeds = [int(r.generator.initial_seed()) for r in requests]
        out = []
        if self.single is None:
            batch = frames_batch(requests)
        else:  # the single stream steps one request at a time
            batch = [list(frames(r)) for r in requests]
        for i, codes in enumerate(batch):
            if not codes:
                raise InputError(f"text {i}: nothing to say, the text is empty")
            out.append(torch.stack(codes, dim=1).cpu())
        return out

    def synthesize_batch(
        self,
        texts: Sequence[str],
        voices: Sequence[VoicePrompt | None] | None = None,
        seeds: Sequence[int | None] | None = None,
        **options,
    ) -> list[np.ndarray]:
        """Speech for several independent requests: per request ``[S_b]`` float32 samples at
        :attr:`sample_rate`, the samples :meth:`synthesize` gives for it alone.

        The talker steps all requests together; each request's codes are then decoded on
        their own. Arguments are those of :meth:`codes_batch`.
        """
        codes = self.codes_batch(texts, voices, seeds, **options)
        voices = list(voices) if voices is not None else [None] * len(texts)
        return [self._decode(c, v) for c, v in zip(codes, voices, strict=True)]

    def _decode(self, codes: torch.Tensor, voice: VoicePrompt | None) -> np.ndarray:
        """Codes ``[K, T]`` of the speech -> samples, the reference frames' audio cut."""
        ref = voice.ref_codes if voice is not None and voice.in_context else None
        if ref is not None:
            # The reference frames give the vocoder the voice's context; their audio is cut.
            codes = torch.cat((ref.to(codes), codes), dim=1)
        with torch.inference_mode():
            audio = self.codec.decode(codes[None])
        skip = 0 if ref is None else ref.shape[1] * self.codec.decoder.hop_length
        return audio.wav[0, 0, skip : int(audio.lengths[0])].cpu().numpy()

    def stream(
        self, text: str | Iterable[str], voice: VoicePrompt | None = None, **options
    ) -> Iterator[np.ndarray]:
        """Speech for ``text`` as it is generated: ``[n]`` float32 chunks at 24 kHz.

        The first chunk follows the first frame. Text may be an iterable of pieces that is
        read only as far as the speech needs it. Concatenated, the chunks equal
        :meth:`synthesize` for the same seed.
        """
        request = self._request(text, voice, TTSOptions(**options))
        ref = voice.ref_codes if voice is not None and voice.in_context else None
        return stream_audio(self.codec.decoder, request, ref)
