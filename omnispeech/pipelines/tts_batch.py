"""The frame loop of many independent synthesis requests, stepped together.

A frame costs the time to read the talker's and code predictor's weights; ``B`` requests
stepped together read them once per frame for all. Each request keeps everything that makes
its speech its own: text, voice, language, its sampling generator (one per request, drawn row
by row, see :func:`omnispeech.core.sampling.sample`), its text schedule and duration guard.

Requests are split into utterances as when alone (:class:`~omnispeech.pipelines.tts_loop.
Utterance`), and the batch runs in rounds: round ``r`` steps the ``r``-th utterance of every
request that has one. Prompts differ in length, so they are left-padded (the padding is
masked, see :class:`~omnispeech.core.KVCache`); a request whose utterance ends leaves the
batch and draws nothing more. So each request's codes are the codes it gets alone, except
where two candidates are within float rounding of each other (the batch's masked attention
sums in another order; the probabilities differ by about 1e-7).
"""

from __future__ import annotations

import torch

from omnispeech.errors import InputError
from omnispeech.pipelines.tts_loop import SynthesisRequest, Utterance, next_utterance
from omnispeech.pipelines.tts_prompt import TextTrack


@torch.inference_mode()
def frames_batch(requests: list[SynthesisRequest]) -> list[list[torch.Tensor]]:
    """Generate every request's frames; per request a list of ``[K]`` int64 codes.

    Raises:
        InputError: the requests do not share one talker and one generation config (the
            batch samples each frame with one config).
    """
    if not requests:
        return []
    talker, gen = requests[0].talker, requests[0].generation
    if any(r.talker is not talker or r.generation != gen for r in requests):
        raise InputError("requests of one batch need the same model and sampling settings")
    tracks = [TextTrack(talker) for _ in requests]
    out: list[list[torch.Tensor]] = [[] for _ in requests]
    while True:
        utts = {}
        for b, request in enumerate(requests):
            utt = next_utterance(request, tracks[b])
            if utt is not None:
                utts[b] = utt
        if not utts:
            return out
        _round(requests, utts, out)


def _round(
    requests: list[SynthesisRequest], utts: dict[int, Utterance], out: list[list[torch.Tensor]]
) -> None:
    """One utterance per request in ``utts`` (request index -> utterance), stepped together."""
    talker, gen = requests[0].talker, requests[0].generation
    live = list(utts)
    prompts = [utts[b].prompt for b in live]
    L = max(p.shape[0] for p in prompts)
    x = prompts[0].new_zeros(len(live), L, prompts[0].shape[-1])
    for row, p in enumerate(prompts):
        x[row, L - p.shape[0] :] = p
    pad = [L - p.shape[0] for p in prompts]
    capacity = max(utts[b].capacity + pad[row] for row, b in enumerate(live))
    state = talker.start(x, capacity, pad=torch.tensor(pad, device=x.device))
    eos = talker.spec.tokens.codec_eos
    while live:
        # The duration guard, per request, on its own positions (without its padding).
        keep = [
            row
            for row, b in enumerate(live)
            if not utts[b].cut(state.cache.length - pad[row]) or _finish(utts[b])
        ]
        live, pad = _select(state, live, pad, keep)
        if not live:
            return
        codes = talker.sample_frame(state, gen, [requests[b].generator for b in live])
        ended = (codes[:, 0] == eos).tolist()
        texts = []
        keep = []
        for row, b in enumerate(live):
            if ended[row]:
                utts[b].finish()
                continue
            out[b].append(codes[row].clone())
            texts.append(utts[b].next_text())
            keep.append(row)
        if len(keep) < len(live):
            index = torch.tensor(keep, device=codes.device)
            codes = codes[index]
            live, pad = _select(state, live, pad, keep)
        if live:
            talker.advance(state, codes, torch.stack(texts))


def _finish(utt: Utterance) -> bool:
    """Close a cut utterance; False, so that its request leaves the batch."""
    utt.finish()
    return False


def _select(state, live: list[int], pad: list[int], keep: list[int]) -> tuple[list, list]:
    """Keep the rows ``keep`` of the state; the matching request indices and paddings."""
    if len(keep) == len(live):
        return live, pad
    if keep:
        state.select(torch.tensor(keep, device=state.hidden.device))
    return [live[r] for r in keep], [pad[r] for r in keep]
