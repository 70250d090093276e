"""The code users run for text to speech equals qwen-tts: :func:`tts_loop.frames` (text feed,
ARIA scheduler with its lead-in, talker + code predictor, fixed-shape step) against the
golden greedy generations written by qwen-tts 0.1.1 (``tests/golden/make_qwen_tts_talker.py``).

``test_talker_parity`` checks the talker with its own loop over ``build_prompt``; here the
pipeline's loop builds the prompt, pulls the text and feeds it frame by frame, as
:meth:`omnispeech.pipelines.TTS.codes` does. The text arrives whole or a character at a
time (the scheduler then waits for text it needs).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from omnispeech.interleave import RatePolicy
from omnispeech.pipelines import tts_loop
from omnispeech.pipelines.tts_loop import SynthesisRequest
from omnispeech.pipelines.tts_text import TextFeed
from omnispeech.talker import GenerationConfig, Talker
from tests.tts_ref import GOLDEN_CASES, golden_instruct, golden_voice

GOLDEN = Path(__file__).parent / "data" / "qwen_tts_talker_tiny"
ROLE = [1004, 77, 10]  # <|im_start|>assistant\n of the golden model's small text ids
FRAMES = 13  # the golden runs stop after 14 talker tokens: 13 whole frames


@pytest.fixture(scope="module")
def golden():
    return Talker.from_pretrained(GOLDEN), dict(np.load(GOLDEN / "cases.npz"))


def _text(target: list[int]) -> tuple[str, dict[str, int]]:
    """A text of one letter per target token, space separated (one word per token), and the
    letter -> token table that tokenises it."""
    letters = [chr(ord("a") + i) for i in range(len(target))]
    return " ".join(letters), dict(zip(letters, target, strict=True))


@pytest.mark.parametrize("case, mode, language, arrangement", GOLDEN_CASES)
@pytest.mark.parametrize("pieces", ["whole", "letters"])
def test_pipeline_frames_match_golden(golden, case, mode, language, arrangement, pieces):
    talker, cases = golden
    text, table = _text(cases["target"].tolist())
    request = SynthesisRequest(
        talker=talker,
        role_ids=ROLE,
        feed=TextFeed(lambda s: [table[c] for c in s if not c.isspace()], max_tokens=64),
        pieces=iter([text] if pieces == "whole" else list(text)),
        voice=golden_voice(mode, cases),
        language=language,
        policy=RatePolicy.released(streaming_text=arrangement == "stream"),
        arrangement=arrangement,
        generation=GenerationConfig.greedy(),
        generator=torch.Generator().manual_seed(0),
        instruct_ids=golden_instruct(mode, cases),
        step="static" if pieces == "letters" else "eager",
    )
    got = list(itertools.islice(tts_loop.frames(request), FRAMES))
    want = cases[f"case_{case}"]
    assert len(got) == want.shape[0]
    assert np.array_equal(torch.stack(got).numpy(), want)
