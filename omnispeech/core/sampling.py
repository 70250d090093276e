"""Token sampling: repetition penalty, suppression, temperature, top-k, top-p, seeded draws.

The order of the steps is the one the released speech models were run with (the Hugging Face
logits-processor order): repetition penalty on the raw logits, suppression, then temperature,
top-k and top-p on the scaled logits, then a categorical draw. Greedy decoding skips the
warpers and takes the arg-max of the penalised, suppressed logits, so it reproduces the
reference's greedy tokens exactly.

Randomness comes only from the caller's :class:`torch.Generator`: the same seed gives the same
tokens, and two streams never share hidden global state. A batch of independent requests
passes one generator per row, so each row draws what it would draw alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from omnispeech.config import FrozenConfig


@dataclasses.dataclass(frozen=True)
class SamplingConfig(FrozenConfig):
    """How one token is chosen from logits.

    Attributes:
        do_sample: draw from the distribution; False takes the arg-max (greedy).
        temperature: divides the logits before top-k/top-p (> 0).
        top_k: keep the k most likely tokens (0 = all).
        top_p: keep the smallest set whose probability reaches p (1.0 = all).
        repetition_penalty: > 1 discourages tokens in the history: a positive logit is
            divided by it, a negative one multiplied (1.0 = off).
    """

    do_sample: bool = True
    temperature: float = 0.9
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> SamplingConfig:
        """The same settings with sampling off (penalty and suppression still apply)."""
        return dataclasses.replace(self, do_sample=False)


def apply_repetition_penalty(
    logits: torch.Tensor, history: torch.Tensor | None, penalty: float
) -> torch.Tensor:
    """Penalise the tokens of ``history`` ``[B, N]`` in ``logits`` ``[B, V]`` (a new tensor).

    Each distinct token is penalised once, however often it occurred.
    """
    if history is None or history.numel() == 0 or penalty == 1.0:
        return logits
    picked = logits.gather(1, history)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    return logits.scatter(1, history, picked)


def warp(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """Temperature, top-k and top-p on ``logits`` ``[B, V]``; removed entries become -inf."""
    logits = logits / cfg.temperature
    if 0 < cfg.top_k < logits.shape[-1]:
        kth = torch.topk(logits, cfg.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Remove the low tail whose mass stays within 1 - p; the most likely token always stays.
        remove = cumulative <= 1 - cfg.top_p
        remove[..., -1] = False
        logits = logits.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    return logits


Generators = torch.Generator | Sequence[torch.Generator] | None


def sample(
    logits: torch.Tensor,
    cfg: SamplingConfig,
    generator: Generators = None,
    history: torch.Tensor | None = None,
    suppress: torch.Tensor | None = None,
) -> torch.Tensor:
    """Choose one token per row.

    Args:
        logits: ``[B, V]`` scores (any float dtype; computed in float32).
        cfg: the sampling settings.
        generator: source of randomness for ``do_sample`` (seed it for reproducible output),
            or one generator per row (rows drawn one by one, each as if alone).
        history: ``[B, N]`` earlier tokens for the repetition penalty.
        suppress: ``[V]`` bool, True for tokens that may never be chosen.

    Returns:
        ``[B]`` int64 token ids.
    """
    logits = logits.float()
    logits = apply_repetition_penalty(logits, history, cfg.repetition_penalty)
    if suppress is not None:
        logits = logits.masked_fill(suppress, float("-inf"))
    if not cfg.do_sample:
        return logits.argmax(dim=-1)
    if 0 < cfg.top_k < logits.shape[-1] and cfg.top_p == 1.0:
        # Draw among the k candidates alone: the same distribution as masking the rest to
        # -inf, but the draw reads k probabilities instead of the whole vocabulary (a speech
        # frame makes 16 draws from 2-3k codes; the full draw cost about 0.1 ms each).
        values, candidates = torch.topk(logits / cfg.temperature, cfg.top_k, dim=-1)
        return candidates.gather(-1, _draw(values.softmax(dim=-1), generator)).squeeze(-1)
    return _draw(warp(logits, cfg).softmax(dim=-1), generator).squeeze(-1)


def _draw(probs: torch.Tensor, generator: Generators) -> torch.Tensor:
    """One index per row of ``probs`` ``[B, N]`` -> ``[B, 1]``, with one generator for all
    rows or one per row (each row then draws what it would draw alone)."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.multinomial(probs, 1, generator=generator)
    if len(generator) != probs.shape[0]:
        raise ValueError(f"{len(generator)} generators for {probs.shape[0]} rows")
    rows = [torch.multinomial(probs[i : i + 1], 1, generator=g) for i, g in enumerate(generator)]
    return torch.cat(rows)
