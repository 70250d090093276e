"""Core blocks: the Qwen3 decoder with its preallocated KV cache, RMSNorm, the streaming base."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omnispeech.core import KVCache, RMSNorm
from tests.tiny import TINY_DECODER, tiny_decoder

CFG = TINY_DECODER


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 7), min_size=1, max_size=8), seed=st.integers(0, 1000))
def test_cached_chunks_equal_full_pass(sizes, seed):
    dec = tiny_decoder()
    x = torch.randn(2, sum(sizes), CFG.hidden_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        full = dec(x)
        cache = dec.new_cache(2, sum(sizes))
        parts, pos = [], 0
        for n in sizes:
            parts.append(dec(x[:, pos : pos + n], cache))
            pos += n
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


def test_future_tokens_do_not_change_past_outputs():
    dec = tiny_decoder()
    x = torch.randn(1, 12, CFG.hidden_size)
    y = x.clone()
    y[:, 8:] = torch.randn(1, 4, CFG.hidden_size)
    with torch.no_grad():
        assert torch.allclose(dec(x)[:, :8], dec(y)[:, :8], atol=1e-6)


def test_kv_cache_is_preallocated_and_bounded():
    cache = KVCache(1, 2, 8, capacity=4)
    keys = cache.keys
    cache.update(torch.ones(1, 2, 3, 8), torch.ones(1, 2, 3, 8))
    assert cache.keys is keys and cache.length == 3  # written in place
    with pytest.raises(RuntimeError, match="capacity 4"):
        cache.update(torch.ones(1, 2, 2, 8), torch.ones(1, 2, 2, 8))


def test_rmsnorm_normalises_in_float32_for_half_inputs():
    norm = RMSNorm(64).to(torch.bfloat16)  # a bf16 model: weights in bf16 too
    x = torch.randn(3, 64) * 100
    out = norm(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    ref = x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
    assert torch.allclose(out.float(), ref, atol=2e-2)
