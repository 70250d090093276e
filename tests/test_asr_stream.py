"""Live transcription: updates per final 8-s window, no recomputation, final text as offline."""

from __future__ import annotations

import numpy as np
import pytest

from omnispeech.errors import EmptyAudioError, InputError
from omnispeech.pipelines import ASR

SR = 16000


@pytest.fixture(scope="module")
def asr(tiny_asr_dir) -> ASR:
    return ASR.from_pretrained(tiny_asr_dir)


def _noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.mark.parametrize("language, piece_ms", [(None, 100), ("en", 730)])
def test_final_text_equals_offline_without_forced_prefix(asr, language, piece_ms):
    wav = _noise(19.3, seed=piece_ms)
    updates = []
    with asr.stream(language=language, unfixed_tokens=None) as live:
        step = SR * piece_ms // 1000
        for i in range(0, wav.shape[0], step):
            update = live.push(wav[i : i + step])
            if update is not None:
                updates.append(update)
        final = live.finish()
    # Two complete 8-s windows -> two updates, then the final one.
    assert [u.seconds for u in updates] == [8.0, 16.0]
    assert final.final and not any(u.final for u in updates)
    offline = asr.transcribe(wav, language=language)
    assert final.text == offline.text and final.language == offline.language


def test_forced_prefix_keeps_the_settled_part(asr):
    wav = _noise(17.0, seed=3)
    with asr.stream(language="en", unfixed_tokens=2) as live:
        first = None
        for i in range(0, wav.shape[0], SR):
            update = live.push(wav[i : i + SR])
            first = first or update
        answer_after_first = list(live._answer)
        final = live.finish()
    assert first is not None and len(answer_after_first) > 2
    # The final answer starts with every token of the earlier one except the unfixed tail.
    assert live._answer[: len(answer_after_first) - 2] == answer_after_first[:-2]
    assert final.final


def test_stream_errors(asr):
    with pytest.raises(InputError, match="open session"):
        asr.stream().push(np.zeros(10, dtype=np.float32))
    with asr.stream(max_seconds=1.0) as live, pytest.raises(InputError, match="max_seconds"):
        live.push(_noise(1.5, seed=1))
    with asr.stream() as live, pytest.raises(EmptyAudioError):
        live.finish()
    with pytest.raises(InputError, match="unsupported language"):
        asr.stream(language="xx")
