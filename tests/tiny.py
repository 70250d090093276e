"""Tiny tokenizers and reference models for tests (no network, seconds to build)."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer

from omnispeech.core import Decoder, DecoderConfig
from tests.conftest import TINY_AUDIO, redraw


def ref_asr_model(tok: Tokenizer, vocab_size: int = 320, seed: int = 0, lively: bool = False):
    """A tiny ``Qwen3ASRForConditionalGeneration`` whose special ids match ``tok``.

    Random weights make a degenerate recogniser: whatever the audio, it repeats one token, so
    greedy ids cannot tell a correct decoder from a broken one. With ``lively`` the weights are
    drawn larger, the output head is untied and centred (see :func:`_centre_head`), and the
    answer changes with the audio: a test that compares answers then sees the audio.
    """
    from transformers import Qwen3ASRConfig, Qwen3ASRForConditionalGeneration

    eos = [tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_end|>")]
    cfg = Qwen3ASRConfig(
        audio_config=dict(TINY_AUDIO),
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=96,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=4096,
            tie_word_embeddings=not lively,
            rope_theta=1e6,
        ),
        audio_token_id=tok.token_to_id("<|audio_pad|>"),
        eos_token_id=eos,
        pad_token_id=eos[1],
        tie_word_embeddings=not lively,
    )
    model = Qwen3ASRForConditionalGeneration._from_config(cfg, attn_implementation="eager").eval()
    redraw(model, std=0.3 if lively else 0.1, seed=seed)
    if lively:
        _centre_head(model, tok, seed)
    else:
        model.tie_weights()
    return model


def _centre_head(model, tok: Tokenizer, seed: int) -> None:
    """Remove from every row of the output head the mean direction of the final states.

    After the last RMSNorm the states of a random decoder that follow an audio prompt share
    one large component, and the head row closest to it wins the arg-max everywhere.
    Projected off, the logits follow what differs between states: the audio and the text so
    far. The mean is taken over two random clips, each with a prompt and random answer text.
    """
    import torch

    from omnispeech.audio import log_mel_spectrogram
    from omnispeech.pipelines.asr_prompt import prompt_parts

    g = torch.Generator().manual_seed(seed)
    head, tail = (tok.encode(p, add_special_tokens=False).ids for p in prompt_parts("", None))
    pad = tok.token_to_id("<|audio_pad|>")
    states = []
    with torch.no_grad():
        for _ in range(2):
            feats = log_mel_spectrogram(0.1 * torch.randn(32000, generator=g))  # 2 s: 26 tokens
            answer = torch.randint(0, 256, (32,), generator=g).tolist()
            ids = torch.tensor([head + [pad] * 26 + tail + answer])
            out = model.model(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                input_features=feats[None],
                input_features_mask=torch.ones(1, feats.shape[-1], dtype=torch.long),
            )
            states.append(out.last_hidden_state[0, -40:])
        mean = torch.cat(states).mean(0)
        unit = mean / mean.norm()
        weight = model.lm_head.weight
        weight -= (weight @ unit)[:, None] * unit[None]


# Chat-template ids of the tiny Omni models, inside their 1024-token text vocabulary (the
# released ids, 151644 and up, would index past it when the talker embeds tts_pad and friends).
TINY_OMNI_CHAT = dict(
    im_start_token_id=1010,
    im_end_token_id=1011,
    tts_pad_token_id=1012,
    tts_bos_token_id=1013,
    tts_eos_token_id=1014,
    system_token_id=1015,
    user_token_id=1016,
    assistant_token_id=1017,
)
TINY_OMNI_AUDIO_END = 1005  # <|audio_end|> of the tiny models (undeclared in the config class)
TINY_OMNI_NEWLINE = 10


def tiny_omni_model(audio_output: bool, talker_layers: int = 1, thinker_layers: int = 1):
    """A whole tiny ``Qwen3OmniMoeForConditionalGeneration`` (random weights).

    With ``audio_output`` it also has the talker, code predictor and Code2Wav (16 code groups,
    so that its ``code2wav`` decodes the talker's codes), as the released Instruct model;
    ``talker_layers`` sets the depth of the talker and of its code predictor,
    ``thinker_layers`` that of the Thinker's text model. Chat ids are :data:`TINY_OMNI_CHAT`.
    """
    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    from tests.vocoder_ref import TINY_CODE2WAV

    mrope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 1, 1]}
    moe = dict(
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        num_hidden_layers=1,
        moe_intermediate_size=16,
        num_experts=4,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        rope_parameters={**mrope, "interleaved": True},
    )
    ids = dict(
        audio_token_id=1000,
        audio_start_token_id=1001,
        image_token_id=1002,
        video_token_id=1003,
        vision_start_token_id=1004,
        position_id_per_seconds=13,
    )
    vision = dict(
        depth=1,
        hidden_size=16,
        intermediate_size=32,
        num_heads=2,
        out_hidden_size=32,
        num_position_embeddings=16,
        deepstack_visual_indexes=[0],
    )
    thinker = dict(
        # Undeclared by the config class, but present in the released config.json.
        audio_end_token_id=TINY_OMNI_AUDIO_END,
        audio_config={**TINY_AUDIO, "output_dim": 32},
        vision_config=vision,
        text_config=dict(
            vocab_size=1024,
            hidden_size=32,
            intermediate_size=64,
            **{**moe, "num_hidden_layers": thinker_layers},
        ),
        **ids,
    )
    extra: dict = {}
    if audio_output:
        predictor = dict(
            vocab_size=2048,
            hidden_size=24,
            intermediate_size=48,
            num_hidden_layers=talker_layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            num_code_groups=16,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        )
        talker_text = dict(
            vocab_size=3072,
            hidden_size=24,
            intermediate_size=48,
            shared_expert_intermediate_size=32,
            **{**moe, "num_hidden_layers": talker_layers},
        )
        extra["talker_config"] = dict(
            text_config=talker_text,
            code_predictor_config=predictor,
            num_code_groups=16,
            thinker_hidden_size=32,
            accept_hidden_layer=1,
            codec_pad_id=2148,
            codec_bos_id=2149,
            codec_eos_token_id=2150,
            codec_nothink_id=2155,
            codec_think_bos_id=2156,
            codec_think_eos_id=2157,
            speaker_id={"ethan": 2302},
            spatial_merge_size=2,
            **ids,
        )
        # The talker makes codes in [0, 2048): the vocoder must embed all of them.
        extra["code2wav_config"] = {**TINY_CODE2WAV, "codebook_size": 2048}
    cfg = Qwen3OmniMoeConfig(
        thinker_config=thinker, enable_audio_output=audio_output, **TINY_OMNI_CHAT, **extra
    )
    return Qwen3OmniMoeForConditionalGeneration(cfg).eval()


# A small random text decoder (2 layers, grouped KV heads) with weights large enough that its
# outputs differ clearly between positions: for cache and batching tests.
TINY_DECODER = DecoderConfig(
    vocab_size=50,
    hidden_size=32,
    intermediate_size=48,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
)


def tiny_decoder() -> Decoder:
    torch.manual_seed(0)
    dec = Decoder(TINY_DECODER).eval()
    with torch.no_grad():
        for p in dec.parameters():
            p.normal_(0, 0.2)
    return dec
