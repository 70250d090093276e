"""Greedy decoding of many independent utterances in one batch.

Decoding is memory-bound: one step multiplies a single vector per stream by every decoder
weight, so ``B`` streams stepped together read the weights once instead of ``B`` times. The
prompts differ in length (each holds its own audio's tokens), so they are left-padded to the
longest: the padded positions are masked and each stream's positions count from its own first
token (see :class:`omnispeech.core.attention.KVCache`). A stream leaves the batch when it
ends, and the others continue on a smaller batch.

Each stream's tokens equal its unbatched greedy decoding except where two logits are within
float rounding of each other: the masked attention of the batch sums in another order
(differences of about 1e-6 measured on tiny models).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from omnispeech.core import Decoder
from omnispeech.pipelines.asr_joint import JointDecoder


@torch.inference_mode()
def greedy_batch(
    decoder: Decoder,
    head: Callable[[torch.Tensor], torch.Tensor],
    prompts: list[torch.Tensor],
    eos: tuple[int, ...],
    budgets: list[int],
    joints: Sequence[JointDecoder | None] | None = None,
) -> list[list[int]]:
    """Greedy continuations of several prompts, stepped together.

    Args:
        decoder: the text decoder.
        head: final hidden states ``[B, hidden]`` -> logits ``[B, vocab]``.
        prompts: one ``[L_b, hidden]`` embedded prompt per stream (lengths may differ).
        eos: ids that end a stream (not included in its output).
        budgets: most new tokens per stream.
        joints: per stream, the CTC side of joint decoding (None: the decoder's arg-max).

    Returns:
        Each stream's new ids, without the end token.
    """
    B = len(prompts)
    if B == 0:
        return []
    lengths = [p.shape[0] for p in prompts]
    L = max(lengths)
    ref = prompts[0]
    x = torch.zeros(B, L, ref.shape[-1], dtype=ref.dtype, device=ref.device)
    for b, p in enumerate(prompts):
        x[b, L - lengths[b] :] = p
    pad = torch.tensor([L - n for n in lengths], device=ref.device)
    cache = decoder.new_cache(B, L + max(budgets), pad=pad)
    hidden = decoder(x, cache)[:, -1]
    out: list[list[int]] = [[] for _ in range(B)]
    live = [b for b in range(B) if budgets[b] > 0]
    if len(live) < B:
        cache.select(torch.tensor(live, device=ref.device))
        hidden = hidden[live]
    end = set(eos)
    while live:
        logits = head(hidden)
        tokens = logits.argmax(-1).tolist()
        for row, b in enumerate(live):
            joint = joints[b] if joints is not None else None
            if joint is not None:
                tokens[row] = joint.choose(logits[row], end)
        keep = []
        for row, b in enumerate(live):
            if tokens[row] in end:
                continue
            out[b].append(tokens[row])
            if len(out[b]) < budgets[b]:
                keep.append(row)
        if not keep:
            break
        if len(keep) < len(live):
            cache.select(torch.tensor(keep, device=ref.device))
            live = [live[r] for r in keep]
        ids = torch.tensor([[tokens[r]] for r in keep], device=ref.device)
        hidden = decoder(decoder.embed_tokens(ids), cache)[:, -1]
    return out
