"""Many independent requests in one batch: left-padded streams of different lengths compute
what each computes alone (decoder, ASR)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnispeech.core.attention import padded_causal_mask
from tests.tiny import TINY_DECODER, tiny_decoder

CFG = TINY_DECODER


def test_padded_mask():
    mask = padded_causal_mask(3, 5, torch.tensor([0, 2]))[:, 0]
    # stream 0: plain causal over the last 3 query positions
    assert mask[0].tolist() == [
        [True, True, True, False, False],
        [True, True, True, True, False],
        [True, True, True, True, True],
    ]
    # stream 1: keys 0 and 1 are padding
    assert mask[1].tolist() == [
        [False, False, True, False, False],
        [False, False, True, True, False],
        [False, False, True, True, True],
    ]
    # a query inside the padding sees the padding before it (no empty row)
    inner = padded_causal_mask(4, 4, torch.tensor([3]))[0, 0]
    assert inner.any(dim=-1).all() and not inner[3, :3].any()


def test_ragged_batch_equals_each_stream_alone():
    """Prefill three prompts of 2, 7 and 4 positions left-padded in one batch, then decode 4
    steps in lockstep, dropping the second stream after 2: every stream's states equal its
    own unbatched run (measured: max difference 5e-7)."""
    dec = tiny_decoder()
    g = torch.Generator().manual_seed(1)
    lengths = [2, 7, 4]
    prompts = [torch.randn(n, 32, generator=g) for n in lengths]
    steps = torch.randn(3, 4, 32, generator=g)
    alone = []
    with torch.no_grad():
        for b, p in enumerate(prompts):
            cache = dec.new_cache(1, 16)
            outs = [dec(p[None], cache)[0, -1]]
            outs += [dec(steps[b, i][None, None], cache)[0, 0] for i in range(4)]
            alone.append(torch.stack(outs))
        L = max(lengths)
        pad = torch.tensor([L - n for n in lengths])
        x = torch.zeros(3, L, 32)
        for b, p in enumerate(prompts):
            x[b, L - len(p) :] = p
        cache = dec.new_cache(3, 16, pad=pad)
        got = [[h] for h in dec(x, cache)[:, -1]]
        live = [0, 1, 2]
        for i in range(4):
            if i == 2:
                live = [0, 2]
                cache.select(torch.tensor(live))
            h = dec(steps[live, i][:, None], cache)[:, 0]
            for row, b in enumerate(live):
                got[b].append(h[row])
    assert torch.isfinite(torch.stack(got[0])).all()
    for b in (0, 2):
        assert torch.allclose(torch.stack(got[b]), alone[b], atol=1e-5)
    assert torch.allclose(torch.stack(got[1]), alone[1][:3], atol=1e-5)


@pytest.fixture(scope="module")
def asr(lively_asr):
    from omnispeech.pipelines import ASR

    return ASR.from_pretrained(lively_asr[1])


def _clip(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)


@pytest.mark.parametrize("language", [None, "English"])
def test_asr_batch_equals_each_alone(asr, language):
    """Four clips of 0.7-5.1 s (prompts of 14-69 audio tokens) in one batch: each transcript's
    ids equal the clip transcribed alone, including a clip that ends long before the others."""
    clips = [_clip(1, 2.37), _clip(2, 0.7), _clip(3, 5.1), _clip(4, 1.2)]
    got = asr.transcribe_batch(clips, language=language, max_new_tokens=24)
    want = [asr.transcribe(c, language=language, max_new_tokens=24) for c in clips]
    assert [g.token_ids for g in got] == [w.token_ids for w in want]
    assert [g.text for g in got] == [w.text for w in want]
    lengths = sorted(len(w.token_ids) for w in want)
    assert lengths[0] < lengths[-1]  # the streams end at different steps


def test_asr_batch_bad_input_is_named(asr):
    from omnispeech.errors import EmptyAudioError

    with pytest.raises(EmptyAudioError, match="audio 1"):
        asr.transcribe_batch([_clip(1, 1.0), np.zeros(16000, dtype=np.float32)])
    assert asr.transcribe_batch([]) == []
