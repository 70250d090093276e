"""Qwen3-Omni end to end against transformers 5.23.0 on a tiny random model.

``Qwen3OmniMoeForConditionalGeneration.generate(..., return_audio=True)`` (greedy Thinker,
greedy talker and code predictor) is the oracle; its talker codes are read where it hands them
to Code2Wav. omnispeech loads the same saved folder (the Thinker through transformers'
Qwen3-MoE causal LM, the rest its own modules) and must give the same Thinker token ids, the
same codes, and audio within 1e-4, both with a text prompt and with an audio prompt; the
audio streamed while the Thinker writes equals the offline decode of the same codes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnispeech.audio import log_mel_spectrogram
from omnispeech.bridge import Omni, OmniVoice, SpeechChunk, SpeechUnavailableWarning, TextToken
from omnispeech.errors import CheckpointError, InputError
from omnispeech.talker import GenerationConfig
from tests.conftest import redraw
from tests.tiny import TINY_OMNI_AUDIO_END, TINY_OMNI_CHAT, TINY_OMNI_NEWLINE, tiny_omni_model
from tests.vocoder_ref import redraw_vocoder

C = TINY_OMNI_CHAT
USER = [C["im_start_token_id"], C["user_token_id"], TINY_OMNI_NEWLINE]
ASSISTANT = [C["im_start_token_id"], C["assistant_token_id"], TINY_OMNI_NEWLINE]
END = [C["im_end_token_id"], TINY_OMNI_NEWLINE]
SYSTEM = [C["im_start_token_id"], C["system_token_id"], TINY_OMNI_NEWLINE, 40, 41, *END]
AUDIO, AUDIO_START = 1000, 1001
THINKER_TOKENS = 9
TALKER_TOKENS = 24


@pytest.fixture(scope="module")
def omni(tmp_path_factory):
    ref = tiny_omni_model(audio_output=True, talker_layers=1, thinker_layers=2)
    redraw(ref, std=0.2, seed=5)
    redraw_vocoder(ref.code2wav, seed=5)  # audio of O(0.1), rarely clipped
    ref.talker.code_predictor.generation_config.do_sample = False
    path = tmp_path_factory.mktemp("omni_chat")
    ref.save_pretrained(path)
    model = Omni.from_pretrained(path)
    assert model.voice.generation.talker.do_sample  # the released default: sampled speech
    # Greedy on both sides, as generate(talker_do_sample=False) is told below.
    model.voice.generation = GenerationConfig.qwen3_omni({"talker_do_sample": False})
    return ref, model, path


def _reference(ref, ids: list[int], feats: torch.Tensor | None):
    """(Thinker ids after the prompt, codes [16, T], audio [S]) from the oracle."""
    seen = []
    decode = ref.code2wav.chunked_decode

    def spy(codes, *args, **kwargs):
        seen.append(codes.clone())
        return decode(codes, *args, **kwargs)

    ref.code2wav.chunked_decode = spy
    x = torch.tensor([ids])
    extra = {}
    if feats is not None:
        extra = dict(
            input_features=feats,
            feature_attention_mask=torch.ones(1, feats.shape[-1], dtype=torch.long),
        )
    try:
        with torch.no_grad():
            seq, wav = ref.generate(
                x,
                attention_mask=torch.ones_like(x),
                speaker="ethan",
                thinker_max_new_tokens=THINKER_TOKENS,
                thinker_do_sample=False,
                thinker_eos_token_id=C["im_end_token_id"],
                talker_max_new_tokens=TALKER_TOKENS,
                talker_do_sample=False,
                **extra,
            )
    finally:
        ref.code2wav.chunked_decode = decode
    return seq[0, len(ids) :].tolist(), seen[0][0], wav[0, 0]


def _ours(model: Omni, prefill):
    tokens, chunks = [], []
    events = model.respond(prefill, "ethan", THINKER_TOKENS, TALKER_TOKENS - 1, seed=0)
    for event in events:
        if isinstance(event, TextToken):
            tokens.append(event.id)
        else:
            chunks.append(event.samples)
    return tokens, chunks


def _check(model: Omni, want, tokens, chunks):
    want_ids, want_codes, want_wav = want
    assert tokens == want_ids
    streamed = np.concatenate(chunks)
    assert streamed.shape == (want_wav.shape[0],)
    diff = np.abs(streamed - want_wav.numpy()).max()
    assert diff < 1e-4, diff
    assert np.abs(streamed).max() > 1e-2  # audible, so the comparison means something
    # The codes, decoded offline by omnispeech's Code2Wav, give the streamed samples.
    with torch.inference_mode():
        offline = model.voice.vocoder(want_codes[None]).numpy()[0, 0]
    assert np.abs(offline - streamed).max() < 1e-5


@pytest.mark.filterwarnings("ignore:Passing `repetition_penalty` with `inputs_embeds`")
def test_text_prompt_matches_generate(omni):
    ref, model, _ = omni
    ids = SYSTEM + USER + [5, 6, 7, 8] + END + ASSISTANT
    want = _reference(ref, ids, None)
    speaking_codes = []
    real = model.voice.speak

    def spy(*args, **kwargs):  # keep the session to compare its codes
        session = real(*args, **kwargs)
        speaking_codes.append(session)
        return session

    model.voice.speak = spy
    try:
        tokens, chunks = _ours(model, model.prefill(ids))
    finally:
        del model.voice.speak
    codes = torch.stack(speaking_codes[0].codes, dim=1)
    assert codes.shape == want[1].shape
    assert torch.equal(codes, want[1])
    _check(model, want, tokens, chunks)
    # Audio came out while the Thinker was still writing: the first chunk precedes the last
    # text token in the event stream.
    events = list(model.respond(model.prefill(ids), "ethan", THINKER_TOKENS, 23, seed=0))
    first_audio = next(i for i, e in enumerate(events) if isinstance(e, SpeechChunk))
    last_text = max(i for i, e in enumerate(events) if isinstance(e, TextToken))
    assert first_audio < last_text


@pytest.mark.filterwarnings("ignore:Passing `repetition_penalty` with `inputs_embeds`")
def test_the_fixed_shape_step_speaks_the_same_reply(omni, monkeypatch):
    """The talker on the fixed-shape step (the one CUDA graphs replay; its experts gathered by
    index, nothing read back to the host): the same reply, codes and audio as ``generate``."""
    from omnispeech.talker.static import StaticSession

    ref, model, _ = omni
    ids = USER + [9, 10, 11] + END + ASSISTANT
    want = _reference(ref, ids, None)
    frames = []
    real = StaticSession.sample

    def counting(self):
        frames.append(1)
        return real(self)

    monkeypatch.setattr(StaticSession, "sample", counting)
    monkeypatch.setattr(model.voice, "step", "static")
    tokens, chunks = _ours(model, model.prefill(ids))
    assert len(frames) >= want[1].shape[1]  # every frame came from the fixed-shape step
    _check(model, want, tokens, chunks)


def _audio_prompt(model: Omni, seconds: float):
    wav = 0.1 * torch.randn(int(16000 * seconds), generator=torch.Generator().manual_seed(6))
    feats = log_mel_spectrogram(wav)[None]
    n = model.ears.encoder.cfg.num_tokens(feats.shape[-1])
    prefix = USER + [AUDIO_START]
    suffix = [TINY_OMNI_AUDIO_END, 50, 51, *END, *ASSISTANT]
    return feats, prefix, suffix, prefix + [AUDIO] * n + suffix


@pytest.mark.filterwarnings("ignore:Passing `repetition_penalty` with `inputs_embeds`")
def test_audio_prompt_matches_generate_offline_and_streamed(omni):
    ref, model, _ = omni
    feats, prefix, suffix, ids = _audio_prompt(model, 1.37)
    want = _reference(ref, ids, feats)
    tokens, chunks = _ours(model, model.prefill(ids, feats))
    _check(model, want, tokens, chunks)
    # The same prompt prefilled while its audio streams in, 230 ms at a time.
    listening = model.listen(prefix)
    for piece in feats.split(23, dim=-1):
        listening.push_features(piece)
    streamed = listening.finish(torch.tensor([suffix]))
    assert streamed.input_ids[0].tolist() == ids
    tokens, chunks = _ours(model, streamed)
    _check(model, want, tokens, chunks)


def test_text_only_model_says_so_once(omni, tmp_path):
    _, _, path = omni
    model = Omni.from_pretrained(path, speech=False)
    assert not model.speaks and model.hears
    with pytest.warns(SpeechUnavailableWarning, match="no talker") as caught:
        for _ in range(2):
            events = list(
                model.respond(model.prefill(USER + [5] + END + ASSISTANT), max_new_tokens=3)
            )
            assert events and all(isinstance(e, TextToken) for e in events)
    assert len(caught) == 1


def test_bad_input_is_one_clear_error(omni):
    ref, model, _ = omni
    thinker_only = Omni(model.thinker, model.ids)  # a model without an audio tower
    with pytest.raises(InputError, match="no audio tower"):
        thinker_only.prefill([AUDIO], torch.zeros(1600))
    with pytest.raises(InputError, match="must end with <\\|im_start\\|>assistant"):
        list(model.respond(model.prefill(USER + [5] + END), max_new_tokens=2))
    wide = torch.nn.Embedding(1024, 48)
    with pytest.raises(CheckpointError, match="48 wide but the talker takes 32-wide"):
        OmniVoice(model.voice.talker, model.voice.vocoder, wide, model.ids)
    with pytest.raises(InputError, match="unknown speaker 'nobody'"):
        model.voice.speaker_id("nobody")
