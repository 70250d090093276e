"""A fixed-shape, host-synchronisation-free frame step, so that a GPU can replay it as a graph.

:class:`Talker.sample_frame` / :meth:`Talker.advance` are the reference loop: they grow the
codebook-0 history, slice the KV cache by its Python length and sample with
``torch.multinomial``. None of that can be captured in a CUDA graph. :class:`StaticSession`
computes the same frame with fixed shapes and in-place buffers only:

* the talker's position is a device tensor; keys and values are written with ``index_copy_``
  and attention runs over the whole cache capacity with a mask (positions past the current one
  are excluded, so the result equals attending to the filled part);
* the repetition penalty uses a ``[B, vocab]`` mask of codes already generated (penalising each
  distinct code once, exactly like the history form), and end-of-speech is blocked by comparing
  a device frame counter with ``min_frames``;
* sampling is the Gumbel-max trick on the warped logits with uniform noise drawn into a buffer
  before each step: ``argmax(logits + g)`` with ``g = -log(-log(u))`` is a draw from
  ``softmax(logits)``, the same distribution as ``torch.multinomial`` (not the same stream of
  numbers). Greedy decoding uses no noise and gives exactly the reference loop's codes.

The code predictor already runs with fixed shapes (its cache is rewound to the same slots every
frame), so it is reused as is, with the Gumbel sampler. A mixture-of-experts talker (Qwen3-Omni)
runs its experts through :meth:`~omnispeech.talker.moe.SharedExpertMoE.fixed`: each token
gathers its experts' weights by index instead of the host reading the routing back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnispeech.core.rope import apply_rotary
from omnispeech.core.sampling import SamplingConfig, warp
from omnispeech.talker.model import GenerationConfig, Talker, TalkerState
from omnispeech.talker.moe import SharedExpertMoE

_TINY = 1e-10  # keeps log(-log(u)) finite for u = 0 or 1


def gumbel_pick(logits: torch.Tensor, cfg: SamplingConfig, uniform: torch.Tensor) -> torch.Tensor:
    """One token per row of ``logits`` ``[B, V]`` (penalised and suppressed already).

    ``uniform`` ``[B, V]`` holds U(0, 1) noise; it is ignored when sampling is off (arg-max).
    """
    logits = logits.float()
    if not cfg.do_sample:
        return logits.argmax(dim=-1)
    noise = -torch.log(-torch.log(uniform.clamp(_TINY, 1 - _TINY)))
    return (warp(logits, cfg) + noise).argmax(dim=-1)


class StaticSession:
    """One generation of ``B`` streams with fixed shapes (see the module docstring).

    Args:
        talker: a talker, dense (Qwen3-TTS) or with experts (Qwen3-Omni; their weights must be
            float: quantized experts raise :class:`~omnispeech.errors.InputError`).
        state: the state returned by :meth:`Talker.start` (its cache and last hidden state).
        gen: sampling settings.

    Call :meth:`fill_noise` before each :meth:`sample` when sampling, then :meth:`advance`
    with the text-track vector, as with :meth:`Talker.sample_frame` / :meth:`Talker.advance`.
    """

    def __init__(self, talker: Talker, state: TalkerState, gen: GenerationConfig) -> None:
        for module in talker.modules():
            if isinstance(module, SharedExpertMoE):
                module.stacked()  # once, here: never inside a captured step
        self.talker, self.gen = talker, gen
        self.cache = state.cache
        B = state.hidden.shape[0]
        device, dtype = state.hidden.device, state.hidden.dtype
        K = talker.num_code_groups
        vocab = talker.spec.talker.vocab_size
        cp_vocab = talker.spec.code_predictor.vocab_size
        self.hidden = state.hidden.clone()
        self.position = torch.full((1,), self.cache.length, dtype=torch.long, device=device)
        self.frames = torch.zeros((), dtype=torch.long, device=device)
        self.seen = torch.zeros(B, vocab, dtype=torch.bool, device=device)
        self.codes = torch.zeros(B, K, dtype=torch.long, device=device)
        self.text = torch.zeros(B, state.hidden.shape[1], dtype=dtype, device=device)
        self.noise = torch.full((B, vocab), 0.5, device=device)
        self.cp_noise = torch.full((K - 1, B, cp_vocab), 0.5, device=device)
        capacity = self.cache.layers[0].capacity
        self._slots = torch.arange(capacity, device=device)

    def fill_noise(self, generator: torch.Generator | None = None) -> None:
        """Draw the step's uniform noise (outside any captured graph)."""
        self.noise.uniform_(generator=generator)
        self.cp_noise.uniform_(generator=generator)

    # -- the two captured halves -----------------------------------------------------------
    def sample(self) -> torch.Tensor:
        """Choose frame codes into :attr:`codes` ``[B, K]`` (no host synchronisation)."""
        talker, gen = self.talker, self.gen
        eos = talker.spec.tokens.codec_eos
        logits = talker.codec_head(self.hidden).float()
        logits = self._penalise(logits, gen.talker.repetition_penalty)
        logits = logits.masked_fill(talker.suppress, float("-inf"))
        blocked = logits[:, eos].masked_fill(self.frames < gen.min_frames, float("-inf"))
        logits[:, eos] = blocked
        code0 = gumbel_pick(logits, gen.talker, self.noise)
        self.seen.scatter_(1, code0[:, None], True)
        residual = self._predict(code0)
        self.codes[:, 0] = code0
        self.codes[:, 1:] = residual
        self.frames += 1
        return self.codes

    def advance(self) -> torch.Tensor:
        """Feed :attr:`codes` plus :attr:`text` at the next position -> new :attr:`hidden`."""
        x = self.talker.embed_frames(self.codes[:, :, None])[:, 0] + self.text
        self.hidden.copy_(self._decode(x[:, None])[:, 0])
        self.position += 1
        return self.hidden

    # -- pieces -------------------------------------------------------------------------------
    def _penalise(self, logits: torch.Tensor, penalty: float) -> torch.Tensor:
        if penalty == 1.0:
            return logits
        penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
        return torch.where(self.seen, penalised, logits)

    def _predict(self, code0: torch.Tensor) -> torch.Tensor:
        cp = self.talker.code_predictor
        cfg = self.gen.code_predictor
        cache = cp._frame_cache(code0.shape[0], self.hidden)
        x = torch.stack((self.hidden, self.talker.embed_codec(code0)), dim=1)
        out = []
        for j in range(cp.num_code_groups - 1):
            logits = cp.logits(x, j, cache)[:, -1]
            code = gumbel_pick(logits, cfg, self.cp_noise[j])
            out.append(code)
            x = cp.model.codec_embedding[j](code)[:, None]
        return torch.stack(out, dim=1)

    def _decode(self, x: torch.Tensor) -> torch.Tensor:
        """One position through the talker's layers at :attr:`position` -> ``[B, 1, H]``."""
        model = self.talker.model
        B = x.shape[0]
        cos, sin = model.rotary(self.position.view(1, 1).expand(B, 1), x.dtype)
        # Slots up to and including the current position are visible.
        mask = (self._slots <= self.position).view(1, 1, 1, -1)
        for layer, kv in zip(model.layers, self.cache.layers, strict=True):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_norm(attn.q_proj(h).view(B, 1, attn.num_heads, attn.head_dim))
            k = attn.k_norm(attn.k_proj(h).view(B, 1, attn.num_kv_heads, attn.head_dim))
            v = attn.v_proj(h).view(B, 1, attn.num_kv_heads, attn.head_dim)
            q = apply_rotary(q.transpose(1, 2), cos, sin)
            k = apply_rotary(k.transpose(1, 2), cos, sin)
            kv.keys.index_copy_(2, self.position, k)
            kv.values.index_copy_(2, self.position, v.transpose(1, 2))
            out = F.scaled_dot_product_attention(
                q,
                kv.keys,
                kv.values,
                attn_mask=mask,
                enable_gqa=attn.num_heads != attn.num_kv_heads,
            )
            x = x + attn.o_proj(out.transpose(1, 2).reshape(B, 1, -1))
            h = layer.post_attention_layernorm(x)
            mlp = layer.mlp
            x = x + (mlp.fixed(h) if isinstance(mlp, SharedExpertMoE) else mlp(h))
        return model.norm(x)
