"""The talker and code predictor equal their references.

- Qwen3-Omni (mixture-of-experts talker): transformers 5.23.0, a tiny random model saved to a
  folder and loaded back by omnispeech; logits and 20 greedy frames.
- Qwen3-TTS (dense talker, projected code predictor): golden files written by qwen-tts 0.1.1
  (``tests/golden/make_qwen_tts_talker.py``); logits and whole greedy generations in every
  released prompt arrangement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from omnispeech.pipelines.tts_prompt import VoicePrompt, build_prompt
from omnispeech.talker import GenerationConfig, Talker
from tests.conftest import redraw
from tests.tiny import tiny_omni_model
from tests.tts_ref import GOLDEN_CASES, golden_instruct, golden_voice

GOLDEN = Path(__file__).parent / "data" / "qwen_tts_talker_tiny"
ROLE = [1004, 77, 10]  # <|im_start|>assistant\n of the golden model's small text ids


@pytest.fixture(scope="module")
def omni(tmp_path_factory):
    ref = tiny_omni_model(audio_output=True, talker_layers=2)
    redraw(ref.talker, std=0.2, seed=1)
    # Greedy residual codes in the reference too (its predictor samples by default).
    ref.talker.code_predictor.generation_config.do_sample = False
    path = tmp_path_factory.mktemp("omni_talker")
    ref.save_pretrained(path)
    return ref, Talker.from_pretrained(path)


def test_omni_talker_logits(omni):
    ref, ours = omni
    x = torch.randn(2, 9, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ref.talker(inputs_embeds=x, attention_mask=torch.ones(2, 9, dtype=torch.long)).logits
    got = ours(x)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    # The same through the KV cache, a prefix then one position at a time.
    cache = ours.model.new_cache(2, 16)
    pieces = [ours(x[:, :5], cache)] + [ours(x[:, i : i + 1], cache) for i in range(5, 9)]
    assert torch.allclose(torch.cat(pieces, 1), want, atol=1e-5)


def test_omni_code_predictor_logits(omni):
    ref, ours = omni
    cp_ref, cp = ref.talker.code_predictor, ours.code_predictor
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 24, generator=g)
    with torch.no_grad():
        out = cp_ref(inputs_embeds=x, use_cache=True)
    cache = cp.model.new_cache(2, 16)
    assert torch.allclose(cp.logits(x, 0, cache), out.logits, atol=1e-5)
    # Later steps: the reference embeds code k with embedding k-1 and scores with head k.
    pkv, codes = out.past_key_values, torch.tensor([[5], [1900]])
    for step in range(1, 4):
        with torch.no_grad():
            out = cp_ref(
                input_ids=codes, past_key_values=pkv, generation_steps=step, use_cache=True
            )
        emb = cp.model.codec_embedding[step - 1](codes)
        assert torch.allclose(cp.logits(emb, step, cache), out.logits, atol=1e-5)
        pkv, codes = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)


# transformers says what the released models do: the penalty covers generated codes only.
@pytest.mark.filterwarnings("ignore:Passing `repetition_penalty` with `inputs_embeds`")
def test_omni_greedy_frames_identical(omni):
    ref, ours = omni
    g = torch.Generator().manual_seed(2)
    prompt = torch.randn(1, 9, 24, generator=g)
    trailing = torch.randn(1, 5, 24, generator=g)
    pad = torch.randn(1, 1, 24, generator=g)
    vocab = 3072
    out = ref.talker.generate(
        inputs_embeds=prompt,
        trailing_text_hidden=trailing,
        tts_pad_embed=pad,
        talker_input_ids=torch.full((1, 9), 151671),
        attention_mask=torch.ones(1, 9, dtype=torch.long),
        do_sample=False,
        max_new_tokens=21,
        min_new_tokens=21,
        repetition_penalty=1.05,
        eos_token_id=2150,
        suppress_tokens=[i for i in range(vocab - 1024, vocab) if i != 2150],
        output_hidden_states=True,
        return_dict_in_generate=True,
    )
    want = torch.stack([h[-1] for h in out.hidden_states if h[-1] is not None], dim=1)[0, :20]
    state = ours.start(prompt, 64)
    got = []
    for n in range(20):
        codes = ours.sample_frame(state, GenerationConfig.greedy(), allow_end=False)
        got.append(codes[0])
        ours.advance(state, codes, trailing[:, n] if n < trailing.shape[1] else pad[:, 0])
    got = torch.stack(got)
    assert got.shape == (20, 16)
    assert torch.equal(got, want)


@pytest.fixture(scope="module")
def tts_golden():
    return Talker.from_pretrained(GOLDEN), dict(np.load(GOLDEN / "cases.npz"))


def test_qwen_tts_logits_match_golden(tts_golden):
    talker, cases = tts_golden
    got = talker(torch.from_numpy(cases["talker_inputs"]))
    assert np.abs(got.detach().numpy() - cases["talker_logits"]).max() < 1e-5
    got = talker.code_predictor.logits(torch.from_numpy(cases["predictor_inputs"]), 0)
    assert np.abs(got.detach().numpy() - cases["predictor_logits"]).max() < 1e-5


def _greedy(
    talker: Talker,
    voice: VoicePrompt,
    language: str,
    arrangement: str,
    cases,
    instruct: list[int] | None = None,
) -> np.ndarray:
    ids = talker.spec.tokens
    target = cases["target"].tolist()
    prompt = build_prompt(talker, ROLE, target, language, voice, arrangement, instruct)
    feed = prompt.trailing + ([] if prompt.end_in_prompt else [ids.tts_eos])
    state = talker.start(prompt.embeds, 128)
    frames = []
    for n in range(13):  # the golden runs stop after 14 talker tokens: 13 whole frames
        codes = talker.sample_frame(state, GenerationConfig.greedy())
        if state.done.all():
            break
        frames.append(codes[0])
        token = feed[n] if n < len(feed) else ids.tts_pad
        talker.advance(state, codes, talker.embed_text(torch.tensor([[token]]))[:, 0])
    return torch.stack(frames).numpy()


@pytest.mark.parametrize("case, mode, language, arrangement", GOLDEN_CASES)
def test_qwen_tts_generation_matches_golden(tts_golden, case, mode, language, arrangement):
    talker, cases = tts_golden
    voice = golden_voice(mode, cases)
    instruct = golden_instruct(mode, cases)
    got = _greedy(talker, voice, language, arrangement, cases, instruct)
    want = cases[f"case_{case}"]
    assert got.shape == want.shape
    assert np.array_equal(got, want)


def test_save_load_round_trip(tts_golden, tmp_path):
    talker, cases = tts_golden
    talker.save_pretrained(tmp_path)
    again = Talker.from_pretrained(tmp_path)
    x = torch.from_numpy(cases["talker_inputs"])
    assert torch.equal(again(x), talker(x))
    assert again.spec == talker.spec


@pytest.mark.parametrize("in_context", [False, True])
@pytest.mark.parametrize("arrangement", ["stream", "full"])
def test_prompt_follows_the_aria_arrangement(tts_golden, in_context, arrangement):
    """The pipeline's prompt has the positions and trailing text of ARIA's description of the
    released arrangement (whose own tests pin it to the reference's counts)."""
    from omnispeech.interleave import (
        ItemKind,
        tts_icl,
        tts_non_streaming,
        tts_prefix_positions,
        tts_streaming,
    )

    talker, cases = tts_golden
    target, ref_text = cases["target"].tolist(), cases["ref_text"].tolist()
    ref_codes = torch.from_numpy(cases["ref_code"]).T
    streaming = arrangement == "stream"
    if in_context:
        voice = VoicePrompt(speaker=torch.from_numpy(cases["speaker"]), ref_codes=ref_codes,
                            ref_text_ids=ref_text)  # fmt: skip
        aria = tts_icl(ref_text, target, ref_codes.shape[1], streaming=streaming)
    else:
        voice = VoicePrompt(speaker=torch.from_numpy(cases["speaker"]))
        aria = (tts_streaming if streaming else tts_non_streaming)(target)
    prompt = build_prompt(talker, ROLE, target, "english", voice, arrangement)
    prefix = tts_prefix_positions(language=True, speaker=True)
    assert prompt.embeds.shape[1] == prefix + len(aria.prefill)
    tokens = [item.token for item in aria.trailing if item.kind is ItemKind.TOKEN]
    assert prompt.trailing == tokens
    kinds = [item.kind for item in aria.trailing]
    # tts_eos either entered in the prompt, or is the last trailing item.
    assert prompt.end_in_prompt == (ItemKind.TEXT_END not in kinds)
    assert prompt.end_in_prompt or kinds[-1] is ItemKind.TEXT_END


def test_code_predictor_loads_alone(tts_golden, tmp_path):
    from omnispeech.talker import CodePredictor

    _, cases = tts_golden
    alone = CodePredictor.from_pretrained(GOLDEN)
    got = alone.logits(torch.from_numpy(cases["predictor_inputs"]), 0)
    assert np.abs(got.detach().numpy() - cases["predictor_logits"]).max() < 1e-5
    alone.save_pretrained(tmp_path)
    again = CodePredictor.from_pretrained(tmp_path)
    x = torch.from_numpy(cases["predictor_inputs"])
    assert torch.equal(again.logits(x, 2), alone.logits(x, 2))
    assert again.cfg == alone.cfg
