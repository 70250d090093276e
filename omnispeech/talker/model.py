"""The talker: a causal LM over codec frames whose inputs sum a text track and a codec track.

Each input position is ``text_track + codec_track`` (both ``[hidden]``). The talker's final
hidden state scores codebook 0 (``codec_head``); the :class:`CodePredictor` fills codebooks
1..K-1 of the same frame; the next input is the sum of all K code embeddings of that frame
plus the next text-track vector. Generation is split into :meth:`Talker.sample_frame` (choose
the frame) and :meth:`Talker.advance` (feed it back with a text item), so a scheduler can
decide which text enters after seeing each frame, e.g. while an LLM is still writing the text.

Module names equal the released keys under ``talker.`` (Qwen3-TTS and Qwen3-Omni).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.checkpoint import CheckpointFolder, load_module, resolve_folder, save_folder
from omnispeech.config import FrozenConfig
from omnispeech.core import DecoderCache, DecoderStack
from omnispeech.core.quant import DEFAULT_GROUP_SIZE, quantize_linear, quantize_linears_
from omnispeech.core.sampling import Generators, SamplingConfig, sample
from omnispeech.errors import CheckpointError, InputError
from omnispeech.talker.code_predictor import CodePredictor
from omnispeech.talker.config import TalkerSpec, qwen3_tts_config, read_spec
from omnispeech.talker.moe import SharedExpertMoE

# The guidance scales accepted everywhere (API, CLI, configs): 1 is none; past 20 the guided
# logits are the difference of two distributions more than anything the talker learnt.
MAX_GUIDANCE = 20.0


@dataclasses.dataclass(frozen=True)
class GenerationConfig(FrozenConfig):
    """Sampling of codebook 0 (talker) and of the residual codebooks (code predictor).

    Defaults are the released Qwen3-TTS ``generation_config.json`` values. ``min_frames``
    frames are produced before end-of-speech may be chosen.

    ``guidance`` is the scale ``w`` of classifier-free guidance on codebook 0: the talker
    scores ``u + w * (c - u)`` from its conditioned logits ``c`` and its unconditioned ones
    ``u`` (the same positions without text and speaker vector, see
    :meth:`Talker.sample_frame`). 1 is no guidance: only talkers trained with unconditioned
    sequences (``data.guidance_dropout``) make use of more.
    """

    talker: SamplingConfig = SamplingConfig(repetition_penalty=1.05)
    code_predictor: SamplingConfig = SamplingConfig()
    min_frames: int = 2
    guidance: float = 1.0

    def __post_init__(self) -> None:
        if not 1.0 <= self.guidance <= MAX_GUIDANCE:
            raise ValueError(f"guidance must lie in [1, {MAX_GUIDANCE:g}], got {self.guidance}")

    @classmethod
    def greedy(cls) -> GenerationConfig:
        """Arg-max everywhere (the parity setting), released repetition penalty kept."""
        return cls(SamplingConfig(do_sample=False, repetition_penalty=1.05), SamplingConfig(False))

    @classmethod
    def qwen3_omni(cls, settings: dict | None = None) -> GenerationConfig:
        """The released Qwen3-Omni speech sampling, with ``talker_*`` overrides from ``settings``.

        The released generation samples codebook 0 with temperature 0.9, top-k 50, top-p 1.0
        and repetition penalty 1.05, and the residual codebooks with temperature 1.0, top-k 50,
        top-p 0.8 and no penalty; the predictor samples exactly when the talker does. Ending
        is allowed from the first frame. ``settings`` (a checkpoint's ``generation_config.json``
        or the generation arguments of the whole model) may set ``talker_do_sample``,
        ``talker_temperature``, ``talker_top_k``, ``talker_top_p`` and
        ``talker_repetition_penalty``.
        """
        data = settings or {}
        talker = SamplingConfig(
            do_sample=bool(data.get("talker_do_sample", True)),
            temperature=float(data.get("talker_temperature", 0.9)),
            top_k=int(data.get("talker_top_k", 50)),
            top_p=float(data.get("talker_top_p", 1.0)),
            repetition_penalty=float(data.get("talker_repetition_penalty", 1.05)),
        )
        predictor = SamplingConfig(do_sample=talker.do_sample, temperature=1.0, top_k=50, top_p=0.8)
        return cls(talker, predictor, min_frames=0)

    @classmethod
    def from_dict(cls, data: dict) -> GenerationConfig:
        """Nested dicts for ``talker`` / ``code_predictor`` (strict, like every config)."""
        data = dict(data)
        for name in ("talker", "code_predictor"):
            if isinstance(data.get(name), dict):
                data[name] = SamplingConfig.from_dict(data[name])
        return super().from_dict(data)

    def to_dict(self) -> dict:
        return {
            "talker": self.talker.to_dict(),
            "code_predictor": self.code_predictor.to_dict(),
            "min_frames": self.min_frames,
            "guidance": self.guidance,
        }


class ResizeMLP(nn.Module):
    """``fc2(silu(fc1(x)))`` with biases: text/Thinker width -> talker width."""

    def __init__(self, in_size: int, mid_size: int, out_size: int) -> None:
        super().__init__()
        self.linear_fc1 = nn.Linear(in_size, mid_size, bias=True)
        self.linear_fc2 = nn.Linear(mid_size, out_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(F.silu(self.linear_fc1(x)))


class TalkerModel(DecoderStack):
    """Decoder layers (dense or mixture of experts), ``codec_embedding`` and, for Qwen3-TTS,
    ``text_embedding``."""

    def __init__(self, spec: TalkerSpec) -> None:
        t = spec.talker
        factory = None
        if t.num_experts:

            def factory() -> nn.Module:
                return SharedExpertMoE(
                    t.hidden_size,
                    t.num_experts,
                    t.num_experts_per_tok,
                    t.moe_intermediate_size,
                    t.shared_expert_intermediate_size,
                    t.norm_topk_prob,
                )

        super().__init__(t.decoder(), factory)
        self.codec_embedding = nn.Embedding(t.vocab_size, t.hidden_size)
        if t.text_vocab_size:
            self.text_embedding = nn.Embedding(t.text_vocab_size, t.text_hidden_size)


@dataclasses.dataclass
class TalkerState:
    """Where one generation stands: cache, last hidden state, codebook-0 history."""

    cache: DecoderCache
    hidden: torch.Tensor  # [B, hidden] final-normed state of the last input position
    history: torch.Tensor  # [B, N] codebook-0 codes generated so far (repetition penalty)
    done: torch.Tensor  # [B] bool: end-of-speech chosen

    @property
    def frames(self) -> int:
        return self.history.shape[1]

    def select(self, index: torch.Tensor) -> None:
        """Keep only the streams ``index`` ``[B']``, in that order (drop finished ones)."""
        self.cache.select(index)
        self.hidden = self.hidden[index]
        self.history = self.history[index]
        self.done = self.done[index]


class Talker(nn.Module):
    """Qwen3-TTS talker (dense) or Qwen3-Omni talker (mixture of experts) with its MTP.

    Args:
        spec: shapes, code predictor and special ids (see :mod:`omnispeech.talker.config`).
    """

    def __init__(self, spec: TalkerSpec) -> None:
        super().__init__()
        self.spec = spec
        t = spec.talker
        self.model = TalkerModel(spec)
        self.text_projection = ResizeMLP(t.text_hidden_size, t.projection_size, t.hidden_size)
        if t.hidden_projection:
            self.hidden_projection = ResizeMLP(t.text_hidden_size, t.projection_size, t.hidden_size)
        self.codec_head = nn.Linear(t.hidden_size, t.vocab_size, bias=False)
        self.code_predictor = CodePredictor(spec.code_predictor)
        # Ids from vocab-1024 on are control tokens, never generated; end-of-speech is the
        # exception (the released generation suppresses exactly this set).
        suppress = torch.zeros(t.vocab_size, dtype=torch.bool, device="cpu")
        suppress[t.vocab_size - 1024 :] = True
        suppress[spec.tokens.codec_eos] = False
        self.register_buffer("suppress", suppress, persistent=False)

    @property
    def num_code_groups(self) -> int:
        return self.spec.talker.num_code_groups

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> Talker:
        """Load ``talker.*`` from a Qwen3-TTS or Qwen3-Omni folder (nothing else is read).

        Raises:
            CheckpointError: not a talker checkpoint, or mismatched keys.
        """
        folder = CheckpointFolder(resolve_folder(name_or_path))
        spec = read_spec(folder)
        return load_module(folder, lambda: cls(spec), "talker.", dtype, device, "talker")

    def save_pretrained(self, path: str | Path, extra_config: dict | None = None) -> None:
        """Write a Qwen3-TTS-layout folder (``talker.*`` keys) that :meth:`from_pretrained`
        and the reference both read."""
        if self.spec.family != "qwen3_tts":
            raise CheckpointError("only Qwen3-TTS talkers are saved; Omni talkers stay in place")
        tensors = {f"talker.{k}": v for k, v in self.state_dict().items()}
        save_folder(path, qwen3_tts_config(self.spec, extra_config), tensors)

    def quantize_int8(self) -> int:
        """Store the weights read at every frame as int8 rows (weight-only, per-row scales).

        Covers the decoder layers, the codec head and the whole code predictor; embeddings and
        the text projection (used for prompts only) stay in floating point. Activations keep
        the model's dtype; on the CPU use bfloat16 or float16 for the fused kernel (see
        :mod:`omnispeech.core.quant`). Returns the number of layers converted.
        """
        return self._quantize(8, DEFAULT_GROUP_SIZE)

    def quantize_int4(self, group_size: int = DEFAULT_GROUP_SIZE) -> int:
        """Store the same weights as :meth:`quantize_int8` in 4 bits, with a scale and an
        offset per ``group_size`` input columns (see :class:`~omnispeech.core.quant.Int4Linear`).

        The model's dtype is kept: on x86 CPUs with AVX2 (groups of 64) our int4 kernel rounds
        the activations to int8 whatever their dtype, so float32 runs as fast as bfloat16, and
        in float32 one stream's decoding step runs the talker's layers in a single kernel call
        (:mod:`omnispeech.core.fused_step`) and the code predictor's whole frame in another
        (:mod:`omnispeech.talker.fused_predict`), faster still; elsewhere ATen's CPU kernel
        serves, fastest with 16-bit activations. Returns the number of layers converted.
        """
        return self._quantize(4, group_size)

    def _quantize(self, bits: int, group_size: int) -> int:
        dtype = self.model.norm.weight.dtype
        # The MoE router ("gate") stays exact: a rounding error there would switch experts.
        count = quantize_linears_(self.model, dtype, ("gate",), bits, group_size)
        count += quantize_linears_(self.code_predictor, dtype, (), bits, group_size)
        self.codec_head = quantize_linear(self.codec_head, dtype, bits, group_size)
        return count + 1

    # -- embeddings -----------------------------------------------------------------------------
    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Text-track vectors of text token ids ``[B, L]`` -> ``[B, L, hidden]``."""
        if not hasattr(self.model, "text_embedding"):
            raise InputError(
                "this talker has no text embedding (Qwen3-Omni): pass Thinker states "
                "through embed_thinker instead"
            )
        return self.text_projection(self.model.text_embedding(ids))

    def embed_thinker(self, states: torch.Tensor, multimodal: bool = False) -> torch.Tensor:
        """Text-track vectors of Thinker states ``[B, L, thinker_hidden]`` -> ``[B, L, hidden]``.

        Text positions pass the Thinker's input embeddings through ``text_projection``;
        audio/image positions its mid-layer states through ``hidden_projection``.
        """
        projection = self.hidden_projection if multimodal else self.text_projection
        return projection(states)

    def embed_codec(self, ids: torch.Tensor) -> torch.Tensor:
        """Codec-track vectors of talker ids (codes or control ids) ``[...]`` -> ``[..., H]``."""
        return self.model.codec_embedding(ids)

    def embed_frames(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of all K code embeddings per frame: codes ``[B, K, T]`` -> ``[B, T, hidden]``."""
        out = self.model.codec_embedding(codes[:, 0])
        for j, table in enumerate(self.code_predictor.model.codec_embedding):
            out = out + table(codes[:, j + 1])
        return out

    # -- running --------------------------------------------------------------------------------
    def forward(
        self, inputs_embeds: torch.Tensor, cache: DecoderCache | None = None
    ) -> torch.Tensor:
        """``inputs_embeds`` ``[B, L, hidden]`` -> codebook-0 logits ``[B, L, vocab]``."""
        return self.codec_head(self.model(inputs_embeds, cache))

    @torch.inference_mode()
    def start(
        self,
        prompt: torch.Tensor,
        capacity: int,
        cache: DecoderCache | None = None,
        pad: torch.Tensor | None = None,
    ) -> TalkerState:
        """Prefill ``prompt`` ``[B, L, hidden]`` with room for ``capacity`` positions in all.

        ``cache`` (from an earlier state) is reused when it is large enough, so consecutive
        utterances do not reallocate it. ``pad`` ``[B]`` batches independent prompts of
        different lengths, each left-padded to ``L`` (see :class:`~omnispeech.core.KVCache`).
        """
        B, L, _ = prompt.shape
        if capacity < L + 1:
            raise InputError(f"capacity {capacity} cannot hold a prompt of {L} positions")
        keys = cache.layers[0].keys if cache is not None else None
        if (
            pad is not None
            or (cache is not None and cache.pad is not None)
            or keys is None
            or keys.shape[0] != B
            or keys.shape[2] < capacity
            or keys.dtype != prompt.dtype
            or keys.device != prompt.device
        ):
            cache = self.model.new_cache(B, capacity, prompt.device, prompt.dtype, pad)
        cache.truncate(0)
        hidden = self.model(prompt, cache)[:, -1]
        empty = torch.empty(B, 0, dtype=torch.long, device=prompt.device)
        done = torch.zeros(B, dtype=torch.bool, device=prompt.device)
        return TalkerState(cache, hidden, empty, done)

    @torch.inference_mode()
    def sample_frame(
        self,
        state: TalkerState,
        gen: GenerationConfig,
        generator: Generators = None,
        allow_end: bool = True,
    ) -> torch.Tensor:
        """Choose the next frame's codes ``[B, K]`` from the state (does not advance it).

        Rows whose codebook 0 is end-of-speech get ``codec_eos`` there and -1 in codebooks
        1..K-1; they are marked ``done``. ``allow_end`` False forbids ending (besides the
        ``min_frames`` rule), e.g. while more text is known to come. ``generator`` may be one
        per row (independent requests): the code predictor then runs on the rows that did
        not end only, so an ending row draws nothing more, as when it runs alone.

        With ``gen.guidance`` above 1 the state holds each stream twice: rows ``0..B-1``
        conditioned and rows ``B..2B-1`` the same streams unconditioned (the caller builds
        and feeds both). Codebook 0 is drawn from the guided logits, the residual codebooks
        from the conditioned rows' hidden states, and both copies get the same ``[B, K]``
        codes (returned as ``[2B, K]``, to feed both).
        """
        guided = gen.guidance != 1.0
        hidden, history = state.hidden, state.history
        logits = self.codec_head(hidden)
        if guided:
            if hidden.shape[0] % 2:
                raise ValueError("a guided state holds an even number of rows")
            B = hidden.shape[0] // 2
            cond, uncond = logits[:B].float(), logits[B:].float()
            logits = uncond + gen.guidance * (cond - uncond)
            hidden, history = hidden[:B], history[:B]
        suppress = self.suppress
        if state.frames < gen.min_frames or not allow_end:
            suppress = suppress.clone()
            suppress[self.spec.tokens.codec_eos] = True
        code0 = sample(logits, gen.talker, generator, history, suppress)
        ended = code0 == self.spec.tokens.codec_eos
        if ended.all():
            # The end-of-speech frame has no residual codes: skip the predictor entirely.
            residual = code0.new_full((code0.shape[0], self.num_code_groups - 1), -1)
        elif generator is None or isinstance(generator, torch.Generator):
            residual, _ = self.code_predictor.predict(
                hidden, self.embed_codec(code0), gen.code_predictor, generator
            )
            residual[ended] = -1
        else:
            go = (~ended).nonzero().squeeze(-1)
            residual = code0.new_full((code0.shape[0], self.num_code_groups - 1), -1)
            residual[go], _ = self.code_predictor.predict(
                hidden[go],
                self.embed_codec(code0[go]),
                gen.code_predictor,
                [generator[int(i)] for i in go],
            )
        codes = torch.cat((code0[:, None], residual), dim=1)
        if guided:  # both copies of each stream go on with the same frame
            codes, ended = codes.repeat(2, 1), ended.repeat(2)
        state.done |= ended
        state.history = torch.cat((state.history, codes[:, :1]), dim=1)
        return codes

    @torch.inference_mode()
    def advance(self, state: TalkerState, codes: torch.Tensor, text: torch.Tensor) -> None:
        """Feed frame ``codes`` ``[B, K]`` plus text-track vector ``text`` ``[B, hidden]``."""
        safe = codes.clamp_min(0)  # ended rows carry -1; their output is ignored anyway
        x = self.embed_frames(safe[:, :, None])[:, 0] + text
        state.hidden = self.model(x[:, None], state.cache)[:, -1]

    @torch.inference_mode()
    def feed(self, state: TalkerState, inputs: torch.Tensor) -> None:
        """Feed input vectors ``[B, n, hidden]`` as they are, ``n`` positions at once (e.g. a
        frame's position and the text positions after it in a single-stream talker)."""
        state.hidden = self.model(inputs, state.cache)[:, -1]
