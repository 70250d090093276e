"""The full Qwen3-ASR model against transformers 5.23.0: identical greedy token ids, and the
same next-token logits at every step of the answer.

A tiny random recogniser repeats one token whatever the audio, so the greedy cases use the
lively tiny model (``lively_asr``), whose answers follow the audio; the logits are compared
as well, which catches a wrong cache or position even where ids coincide."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from omnispeech.audio import log_mel_spectrogram
from omnispeech.pipelines import ASR
from omnispeech.testing import tiny_tokenizer
from tests.tiny import ref_asr_model


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    tok = tiny_tokenizer()
    ref = ref_asr_model(tok)
    folder = tmp_path_factory.mktemp("asr_hf")
    ref.save_pretrained(folder)
    tok.save(str(folder / "tokenizer.json"))
    return ref, tok, folder


def _original_layout(ref, tok, folder):
    """Rewrite the -hf folder into the original ``thinker.*`` layout of the released repos."""
    from safetensors.torch import save_file

    state = ref.state_dict()
    tensors = {}
    for key, value in state.items():
        if key.startswith("model.audio_tower."):
            tensors["thinker.audio_tower." + key[len("model.audio_tower.") :]] = value
        elif key.startswith("model.multi_modal_projector.linear_1."):
            tensors["thinker.audio_tower.proj1." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("model.multi_modal_projector.linear_2."):
            tensors["thinker.audio_tower.proj2." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("model.language_model."):
            tensors["thinker.model." + key[len("model.language_model.") :]] = value
    cfg = ref.config.to_dict()
    config = {
        "model_type": "qwen3_asr",
        "thinker_config": {"audio_config": cfg["audio_config"], "text_config": cfg["text_config"]},
        "eos_token_id": cfg["eos_token_id"],
        "support_languages": ["English", "German", "Chinese"],
    }
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    tok.save(str(folder / "tokenizer.json"))
    return folder


def _reference(ref, prompt: list[int], feats: torch.Tensor, n_new: int):
    """The reference's greedy ids (up to the end token) and its raw logits ``[n, V]`` there."""
    T = feats.shape[-1]
    t_pad = -(-T // 100) * 100
    padded = torch.nn.functional.pad(feats, (0, t_pad - T))[None]
    mask = (torch.arange(t_pad) < T).long()[None]
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = ref.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            input_features=padded,
            input_features_mask=mask,
            max_new_tokens=n_new,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    gen = out.sequences[0, len(prompt) :].tolist()
    eos = set(ref.config.eos_token_id)
    n = next((i for i, t in enumerate(gen) if t in eos), len(gen))
    return gen[:n], torch.cat(out.logits)[: min(n + 1, len(gen))]


@pytest.fixture(scope="module")
def lively(lively_asr):
    ref, folder = lively_asr
    return ref, ASR.from_pretrained(folder)


@pytest.mark.parametrize("language", [None, "English"])
@pytest.mark.parametrize("seconds", [0.7, 2.37, 9.3])
def test_greedy_ids_and_logits_match_reference(lively, monkeypatch, language, seconds):
    ref, asr = lively
    wav = np.random.default_rng(int(seconds * 10)).standard_normal(int(seconds * 16000)) * 0.1
    feats = log_mel_spectrogram(torch.from_numpy(wav.astype(np.float32)))
    with torch.no_grad():
        tokens = asr.encoder(feats[None]).tokens[0]
    prompt = asr.prompt_ids(tokens.shape[0], language)
    steps: list[torch.Tensor] = []
    inner = asr._logits
    monkeypatch.setattr(asr, "_logits", lambda h: steps.append(inner(h).clone()) or steps[-1])
    ours = asr.generate(tokens, language, max_new_tokens=20)
    theirs, their_logits = _reference(ref, prompt, feats, 20)
    # Short clips end early (the end token's logits are compared too); longer ones answer
    # with several distinct tokens.
    assert len(theirs) < 20 if seconds < 1 else len(set(theirs)) >= 5
    assert ours == theirs
    mine = torch.cat(steps)
    assert mine.shape == their_logits.shape
    assert torch.allclose(mine, their_logits, atol=1e-4), (mine - their_logits).abs().max()


def test_original_layout_loads_and_matches(hf_folder, tmp_path):
    ref, tok, folder = hf_folder
    a = ASR.from_pretrained(folder)
    b = ASR.from_pretrained(_original_layout(ref, tok, tmp_path / "orig"))
    assert b.config.languages == ("English", "German", "Chinese")
    wav = np.random.default_rng(3).standard_normal(30000).astype(np.float32) * 0.1
    ra = a.transcribe(wav, language="en", max_new_tokens=12)
    rb = b.transcribe(wav, language="english", max_new_tokens=12)
    assert ra.token_ids == rb.token_ids and len(ra.token_ids) > 0
    assert ra.language == "English"


def test_save_pretrained_round_trip(hf_folder, tmp_path):
    _, _, folder = hf_folder
    a = ASR.from_pretrained(folder)
    a.save_pretrained(tmp_path / "saved")
    b = ASR.from_pretrained(tmp_path / "saved")
    wav = np.random.default_rng(4).standard_normal(20000).astype(np.float32) * 0.1
    assert (
        a.transcribe(wav, max_new_tokens=10).token_ids
        == b.transcribe(wav, max_new_tokens=10).token_ids
    )


def _last_logits(asr: ASR, ref, seconds: float = 2.37) -> tuple[torch.Tensor, torch.Tensor]:
    """The next-token logits after the forced-English prompt: omnispeech's and the reference's."""
    wav = np.random.default_rng(5).standard_normal(int(seconds * 16000)) * 0.1
    feats = log_mel_spectrogram(torch.from_numpy(wav.astype(np.float32)))
    with torch.no_grad():
        tokens = asr.encoder(feats[None]).tokens[0]
        prompt = asr.prompt_ids(tokens.shape[0], "English")
        embeds = asr.decoder.embed_tokens(torch.tensor(prompt))
        embeds[torch.tensor(prompt) == asr.audio_pad_id] = tokens
        mine = asr._logits(asr.decoder(embeds[None]))[0, -1]
        ids = torch.tensor([prompt])
        t_pad = -(-feats.shape[-1] // 100) * 100
        theirs = ref(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            input_features=torch.nn.functional.pad(feats, (0, t_pad - feats.shape[-1]))[None],
            input_features_mask=(torch.arange(t_pad) < feats.shape[-1]).long()[None],
        ).logits[0, -1]
    return mine, theirs


def test_a_stored_head_follows_each_layouts_reference(hf_folder, tmp_path):
    """The released Qwen3-ASR folders set tie_word_embeddings and still store an output head.
    Original layout: the reference ties the head to the embedding after loading, so the
    stored one is never used. -hf layout: transformers keeps a stored head that differs."""
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import Qwen3ASRForConditionalGeneration

    ref, tok, folder = hf_folder
    out = tmp_path / "stored_head"
    shutil.copytree(folder, out)
    tensors = load_file(out / "model.safetensors")
    head = torch.randn_like(tensors["model.language_model.embed_tokens.weight"])
    tensors["lm_head.weight"] = head
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    theirs = Qwen3ASRForConditionalGeneration.from_pretrained(out, attn_implementation="eager")
    assert torch.equal(theirs.lm_head.weight, head)  # transformers keeps the stored head
    hf = ASR.from_pretrained(out)
    mine, ref_logits = _last_logits(hf, theirs.eval())
    assert torch.allclose(mine, ref_logits, atol=1e-4)

    original = _original_layout(ref, tok, tmp_path / "orig")  # its head is the embedding
    tensors = load_file(original / "model.safetensors")
    tensors["thinker.lm_head.weight"] = head
    save_file(tensors, str(original / "model.safetensors"), metadata={"format": "pt"})
    tied = ASR.from_pretrained(original)
    assert tied.lm_head is None  # tied as the config says: the stored head is not used
    mine, ref_logits = _last_logits(tied, ref)  # ref: the same weights, tied
    assert torch.allclose(mine, ref_logits, atol=1e-4)
    cfg = json.loads((original / "config.json").read_text())
    cfg["thinker_config"]["text_config"]["tie_word_embeddings"] = False
    (original / "config.json").write_text(json.dumps(cfg))
    untied = ASR.from_pretrained(original)
    assert untied.lm_head is not None and torch.equal(untied.lm_head.weight, head)
