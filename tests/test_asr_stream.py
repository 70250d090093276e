"""Live transcription: updates per final 8-s window, no recomputation, each update as offline.

The model is the lively tiny recogniser (``lively_asr``): its answer follows the audio, and the
decoder's logits at every answer step are compared with an offline decode of the same audio,
so a wrong audio token, cache position or forced prefix shows even where ids coincide.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnispeech.errors import EmptyAudioError, InputError
from omnispeech.pipelines import ASR
from omnispeech.pipelines.asr_prompt import token_budget

SR = 16000
WINDOW_TOKENS = 104  # audio tokens of one 8-s attention window (13 per second)
ATOL = 1e-4  # logits: streaming and offline differ by float rounding only


@pytest.fixture(scope="module")
def asr(lively_asr) -> ASR:
    return ASR.from_pretrained(lively_asr[1])


class _Recorder:
    """Wraps ``ASR._logits``: keeps the next-token logits of every greedy step."""

    def __init__(self, asr: ASR) -> None:
        self.inner = asr._logits
        self.steps: list[torch.Tensor] = []

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.inner(hidden)
        self.steps.append(logits.detach().clone().reshape(-1))
        return logits

    def take(self) -> torch.Tensor:
        out, self.steps = torch.stack(self.steps) if self.steps else torch.zeros(0), []
        return out


@pytest.fixture
def recorder(asr, monkeypatch) -> _Recorder:
    rec = _Recorder(asr)
    monkeypatch.setattr(asr, "_logits", rec)
    return rec


def _noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def _offline(
    asr: ASR, tokens: torch.Tensor, language: str | None, forced: list[int], budget: int
) -> list[int]:
    """Offline greedy answer for encoder tokens ``[N, D]``, continuing ``forced`` ids."""
    ids = asr.prompt_ids(tokens.shape[0], language) + forced
    ids_t = torch.tensor(ids)
    with torch.inference_mode():
        embeds = asr.decoder.embed_tokens(ids_t)
        embeds[ids_t == asr.audio_pad_id] = tokens
        cache = asr.decoder.new_cache(1, len(ids) + budget)
        return forced + asr.greedy(asr.decoder(embeds[None], cache), cache, budget)


def _run(asr, rec, wav, piece_ms, **options):
    """Stream ``wav``: per update (answer ids, step logits, samples pushed, text)."""
    out = []
    step = SR * piece_ms // 1000
    with asr.stream(**options) as live:
        rec.take()
        pushed = 0
        for i in range(0, wav.shape[0], step):
            pushed += wav[i : i + step].shape[0]
            update = live.push(wav[i : i + step])
            if update is not None:
                out.append((list(live._answer), rec.take(), pushed, update))
        final = live.finish()
        out.append((list(live._answer), rec.take(), wav.shape[0], final))
    return out, live.language


@pytest.mark.parametrize("language, piece_ms", [(None, 100), ("en", 730)])
def test_every_update_equals_offline_decoding(asr, recorder, language, piece_ms):
    wav = _noise(19.3, seed=piece_ms)
    updates, resolved = _run(asr, recorder, wav, piece_ms, language=language, unfixed_tokens=None)
    # Two complete 8-s windows -> two updates, then the final one.
    assert [u.seconds for *_, u in updates[:-1]] == [8.0, 16.0]
    assert updates[-1][3].final and not any(u.final for *_, u in updates[:-1])
    tokens = asr._encode(wav)
    for k, (answer, logits, pushed, _) in enumerate(updates):
        # An update sees the complete windows so far; the final one every token.
        n = tokens.shape[0] if k == len(updates) - 1 else WINDOW_TOKENS * (k + 1)
        want = _offline(asr, tokens[:n], resolved, [], token_budget(pushed, 1 << 30))
        want_logits = recorder.take()
        assert answer == want
        assert logits.shape == want_logits.shape
        assert torch.allclose(logits, want_logits, atol=ATOL), (logits - want_logits).abs().max()
    offline = asr.transcribe(wav, language=language)
    final = updates[-1][3]
    assert final.text == offline.text and final.language == offline.language
    assert list(offline.token_ids) == updates[-1][0]
    assert len(set(offline.token_ids)) > 5  # a real answer, not one token repeated


def test_later_audio_changes_only_later_updates(asr, recorder):
    """Causality of live updates: the first update depends on the first window alone, and
    the model does hear the rest (the final answers differ)."""
    a = _noise(17.0, seed=11)
    b = a.copy()
    b[int(8.5 * SR) :] = _noise(8.5, seed=12)
    ua, _ = _run(asr, recorder, a, 500, language="en", unfixed_tokens=None)
    ub, _ = _run(asr, recorder, b, 500, language="en", unfixed_tokens=None)
    assert ua[0][0] == ub[0][0] and torch.equal(ua[0][1], ub[0][1])
    assert ua[-1][0] != ub[-1][0]


def test_forced_prefix_keeps_the_settled_part(asr, recorder):
    wav = _noise(19.0, seed=4)
    updates, resolved = _run(asr, recorder, wav, 1000, language="en", unfixed_tokens=5)
    first, final = updates[0][0], updates[-1][0]
    assert len(first) > 5
    # Each answer starts with every token of the one before except its unfixed tail...
    for before, after in zip(updates, updates[1:], strict=False):
        assert after[0][: len(before[0]) - 5] == before[0][:-5]
    # ...and continues it as an offline decode forced to start with those tokens would.
    forced = updates[1][0][:-5]
    budget = token_budget(wav.shape[0], 1 << 30) - len(forced)
    want = _offline(asr, asr._encode(wav), resolved, forced, budget)
    assert final == want and len(final) - len(forced) > 20
    assert torch.allclose(updates[-1][1], recorder.take(), atol=ATOL)
    assert updates[-1][3].final


def test_stream_errors(asr):
    with pytest.raises(InputError, match="open session"):
        asr.stream().push(np.zeros(10, dtype=np.float32))
    with asr.stream(max_seconds=1.0) as live, pytest.raises(InputError, match="max_seconds"):
        live.push(_noise(1.5, seed=1))
    with asr.stream() as live, pytest.raises(EmptyAudioError):
        live.finish()
    with pytest.raises(InputError, match="unsupported language"):
        asr.stream(language="xx")
