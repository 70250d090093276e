"""The qwen-tts 0.1.1 reference talker at the Qwen3-TTS-12Hz-0.6B shapes, for the TTS benchmark:
the model with random weights, omnispeech's ``Talker`` holding the same weights, and the same
x-vector cloning prompt for both.

Only the Qwen3-TTS configuration and modeling modules of qwen-tts are imported; its speech
tokenizer import is answered by a stand-in (the talker never uses it). See ``bench_tts.py`` for
the side environment.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import types
from pathlib import Path
from typing import Any

import torch

from benchmarks.qwen_tts_ref import MISSING, load_reference

ROLE = [151644, 77091, 198]  # <|im_start|> assistant \n in the Qwen vocabulary
TRAILER = [151645, 198, 151644, 77091, 198]  # <|im_end|> \n <|im_start|> assistant \n

# Qwen3-TTS-12Hz-0.6B-Base talker_config (dossier §2.1-2.2; released values, not defaults).
TALKER_06B: dict[str, Any] = {
    "vocab_size": 3072,
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1_000_000.0,
    "rope_scaling": {"type": "default", "mrope_section": [24, 20, 20], "interleaved": True},
    "text_vocab_size": 151936,
    "text_hidden_size": 2048,
    "num_code_groups": 16,
    "codec_pad_id": 2148,
    "codec_bos_id": 2149,
    "codec_eos_token_id": 2150,
    "codec_think_id": 2154,
    "codec_nothink_id": 2155,
    "codec_think_bos_id": 2156,
    "codec_think_eos_id": 2157,
    "codec_language_id": {"english": 2050, "chinese": 2055},
    "spk_id": {},
    "spk_is_dialect": {},
    "code_predictor_config": {
        "vocab_size": 2048,
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 5,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "hidden_act": "silu",
        "max_position_embeddings": 65536,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "num_code_groups": 16,
    },
}


def load_tts_reference() -> tuple[Any, Any]:
    """qwen-tts' Qwen3-TTS configuration and modeling modules (no package ``__init__``)."""
    load_reference()  # version checks, bare parent packages
    root = Path(sys.modules["qwen_tts"].__path__[0])
    for name, sub in (("qwen_tts.core.models", "core/models"), ("qwen_tts.inference", "inference")):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(root / sub)]
            sys.modules[name] = module
    stand_in = types.ModuleType("qwen_tts.inference.qwen3_tts_tokenizer")
    stand_in.Qwen3TTSTokenizer = object  # the talker never touches the speech tokenizer
    sys.modules.setdefault(stand_in.__name__, stand_in)
    try:
        cfg = importlib.import_module("qwen_tts.core.models.configuration_qwen3_tts")
        mdl = importlib.import_module("qwen_tts.core.models.modeling_qwen3_tts")
    except ImportError as exc:
        raise SystemExit(f"{MISSING.format(python=sys.executable)} ({exc})") from None
    return cfg, mdl


@dataclasses.dataclass
class TalkerPair:
    """The reference model and omnispeech's talker on the same weights, and one prompt."""

    ref: Any  # Qwen3TTSForConditionalGeneration
    ours: Any  # omnispeech Talker
    text_ids: list[int]
    speaker: torch.Tensor  # [1024] x-vector

    def ref_prompt(self, dtype: torch.dtype) -> dict[str, Any]:
        """Keyword arguments of the reference's ``generate`` (x-vector cloning, streaming
        text, sampling with the released settings)."""
        return {
            "input_ids": [torch.tensor([ROLE + self.text_ids + TRAILER])],
            "languages": ["english"],
            "voice_clone_prompt": {
                "ref_code": None,
                "ref_spk_embedding": [self.speaker.to(dtype)],
                "x_vector_only_mode": [True],
                "icl_mode": [False],
            },
            "non_streaming_mode": False,
        }

    def our_prompt(self, dtype: torch.dtype):
        """The same prompt, arranged by omnispeech."""
        from omnispeech.pipelines.tts_prompt import VoicePrompt, build_prompt

        voice = VoicePrompt(speaker=self.speaker.to(dtype))
        return build_prompt(self.ours, ROLE, self.text_ids, "english", voice, "stream")


def tts_model_06b(text_tokens: int, seed: int = 0) -> TalkerPair:
    """Build the reference at the 0.6B shapes (its own random init) and omnispeech's talker on
    the same tensors. End-of-speech is disabled (its codec-head row zeroed) so that both make
    exactly the requested number of frames."""
    from omnispeech.checkpoint import build_on_meta, load_state
    from omnispeech.talker import Talker
    from omnispeech.talker.config import spec_from_qwen3_tts

    cfg_mod, mdl = load_tts_reference()
    config = cfg_mod.Qwen3TTSConfig(
        talker_config=dict(TALKER_06B),
        tokenizer_type="qwen3_tts_tokenizer_12hz",
        tts_model_size="0b6",
        tts_model_type="base",
    )
    torch.manual_seed(seed)
    ref = mdl.Qwen3TTSForConditionalGeneration(config).eval()
    with torch.no_grad():
        ref.talker.codec_head.weight[TALKER_06B["codec_eos_token_id"]].zero_()
    spec = spec_from_qwen3_tts({"talker_config": TALKER_06B})
    ours = build_on_meta(lambda: Talker(spec))
    load_state(ours, dict(ref.talker.state_dict()), "reference talker")
    ours.eval()
    g = torch.Generator().manual_seed(seed)
    text_ids = torch.randint(1000, 150000, (text_tokens,), generator=g).tolist()
    speaker = torch.randn(1024, generator=g) * 0.5
    return TalkerPair(ref, ours, text_ids, speaker)
