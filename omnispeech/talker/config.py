"""Shapes and special ids of the talker and its code predictor, and the released layouts.

Two released families share one architecture:

- Qwen3-TTS (``model_type`` ``qwen3_tts``): a dense Qwen3 talker with its own text embedding
  and ``text_projection``; ``talker_config`` / ``talker_config.code_predictor_config``.
- Qwen3-Omni (``qwen3_omni_moe``): a mixture-of-experts talker (routed experts plus a gated
  shared expert in every layer) fed with Thinker states through ``text_projection`` and
  ``hidden_projection``; ``talker_config.text_config`` / ``talker_config.code_predictor_config``.

Class defaults of the reference configs are not the released values, so every field is read
from the checkpoint's ``config.json`` here, in one place.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omnispeech.checkpoint import CheckpointFolder
from omnispeech.config import FrozenConfig
from omnispeech.core import DecoderConfig, decoder_config_from_released
from omnispeech.errors import CheckpointError, ConfigError

# The decoder-shape fields both configs share, named as in DecoderConfig.
_SHAPE = (
    "vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
    "num_kv_heads", "head_dim", "rope_theta", "rms_norm_eps",
)  # fmt: skip


def _shape(section: dict[str, Any]) -> dict[str, Any]:
    """The decoder shape of a released (Qwen3-style) config section, as DecoderConfig fields."""
    dec = decoder_config_from_released(section)
    return {name: getattr(dec, name) for name in _SHAPE}


def _decoder(cfg: TalkerConfig | CodePredictorConfig, max_positions: int) -> DecoderConfig:
    return DecoderConfig(
        **{name: getattr(cfg, name) for name in _SHAPE},
        max_positions=max_positions,
        tie_word_embeddings=False,
    )


@dataclasses.dataclass(frozen=True)
class CodePredictorConfig(FrozenConfig):
    """The multi-token predictor of the residual codebooks 1..K-1 of one frame.

    ``input_size`` is the talker width: its hidden state and the residual-code embeddings live
    there, and a projection to ``hidden_size`` exists only when the two differ (Qwen3-TTS 1.7B).
    """

    vocab_size: int = 2048
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_layers: int = 5
    num_heads: int = 16
    num_kv_heads: int = 8
    head_dim: int = 128
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    num_code_groups: int = 16
    input_size: int = 1024

    def __post_init__(self) -> None:
        if self.num_code_groups < 2:
            raise ValueError("a code predictor needs at least 2 code groups")

    def decoder(self) -> DecoderConfig:
        """The decoder shape (positions never exceed ``num_code_groups``)."""
        return _decoder(self, self.num_code_groups + 1)

    @classmethod
    def from_released(cls, section: dict[str, Any], input_size: int) -> CodePredictorConfig:
        """From a released ``code_predictor_config`` dict."""
        return cls(
            **_shape(section), num_code_groups=section["num_code_groups"], input_size=input_size
        )


@dataclasses.dataclass(frozen=True)
class TalkerConfig(FrozenConfig):
    """The talker: codebook-0 language model over summed text-track + codec-track embeddings.

    ``num_experts`` 0 means dense SwiGLU layers (Qwen3-TTS); otherwise every layer holds a
    routed mixture of experts plus a shared expert (Qwen3-Omni). ``text_vocab_size`` 0 means the
    talker owns no text embedding (Qwen3-Omni takes the Thinker's).
    """

    vocab_size: int = 3072
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_layers: int = 28
    num_heads: int = 16
    num_kv_heads: int = 8
    head_dim: int = 128
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_positions: int = 32768
    text_vocab_size: int = 151936
    text_hidden_size: int = 2048
    projection_size: int = 2048  # width inside text_projection (fc1 output)
    hidden_projection: bool = False  # Qwen3-Omni: multimodal Thinker states
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    norm_topk_prob: bool = True
    num_code_groups: int = 16

    def __post_init__(self) -> None:
        if self.num_experts and not 0 < self.num_experts_per_tok <= self.num_experts:
            raise ValueError("num_experts_per_tok must be in [1, num_experts]")

    def decoder(self) -> DecoderConfig:
        return _decoder(self, self.max_positions)


@dataclasses.dataclass(frozen=True)
class TalkerTokens(FrozenConfig):
    """Special ids of the codec track (talker vocabulary) and of the text track.

    ``languages`` maps a lower-case language name to its codec tag; ``speakers`` a lower-case
    speaker name to its codec id; ``dialects`` a speaker to the dialect tag that replaces the
    language for Chinese or automatic language.
    """

    codec_pad: int = 2148
    codec_bos: int = 2149
    codec_eos: int = 2150
    codec_think: int = 2154
    codec_nothink: int = 2155
    codec_think_bos: int = 2156
    codec_think_eos: int = 2157
    tts_pad: int = 151671
    tts_bos: int = 151672
    tts_eos: int = 151673
    im_start: int = 151644
    im_end: int = 151645
    languages: dict[str, int] = dataclasses.field(default_factory=dict)
    speakers: dict[str, int] = dataclasses.field(default_factory=dict)
    dialects: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TalkerSpec:
    """Everything a talker folder declares: shapes, code predictor, ids, family."""

    talker: TalkerConfig
    code_predictor: CodePredictorConfig
    tokens: TalkerTokens
    family: str  # "qwen3_tts" or "qwen3_omni"
    # Qwen3-Omni: which Thinker hidden state (index into the LM's hidden states, 0 = the input
    # embeddings) feeds hidden_projection at audio/image positions. None for Qwen3-TTS.
    accept_hidden_layer: int | None = None


def _speaker_ids(raw: dict[str, Any] | None) -> dict[str, int]:
    # Some copies of the config store each id as a one-element list.
    out = {}
    for name, value in (raw or {}).items():
        out[name.lower()] = int(value[0] if isinstance(value, list) else value)
    return out


def spec_from_qwen3_tts(cfg: dict[str, Any]) -> TalkerSpec:
    """Read a released Qwen3-TTS ``config.json`` (``model_type`` ``qwen3_tts``)."""
    try:
        t = cfg["talker_config"]
        talker = TalkerConfig(
            **_shape(t),
            max_positions=t.get("max_position_embeddings", 32768),
            text_vocab_size=t.get("text_vocab_size", 151936),
            text_hidden_size=t.get("text_hidden_size", 2048),
            projection_size=t.get("text_hidden_size", 2048),
            num_code_groups=t["num_code_groups"],
        )
        cp = CodePredictorConfig.from_released(t["code_predictor_config"], t["hidden_size"])
        dialects = {
            k.lower(): v
            for k, v in (t.get("spk_is_dialect") or {}).items()
            if v not in (False, None)
        }
        tokens = TalkerTokens(
            codec_pad=t["codec_pad_id"],
            codec_bos=t["codec_bos_id"],
            codec_eos=t["codec_eos_token_id"],
            codec_think=t["codec_think_id"],
            codec_nothink=t["codec_nothink_id"],
            codec_think_bos=t["codec_think_bos_id"],
            codec_think_eos=t["codec_think_eos_id"],
            tts_pad=cfg.get("tts_pad_token_id", 151671),
            tts_bos=cfg.get("tts_bos_token_id", 151672),
            tts_eos=cfg.get("tts_eos_token_id", 151673),
            im_start=cfg.get("im_start_token_id", 151644),
            im_end=cfg.get("im_end_token_id", 151645),
            languages={k.lower(): int(v) for k, v in (t.get("codec_language_id") or {}).items()},
            speakers=_speaker_ids(t.get("spk_id")),
            dialects=dialects,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"not a Qwen3-TTS talker config ({exc.__class__.__name__}: {exc})"
        ) from exc
    return TalkerSpec(talker, cp, tokens, "qwen3_tts")


def spec_from_qwen3_omni(cfg: dict[str, Any]) -> TalkerSpec:
    """Read a released Qwen3-Omni ``config.json`` (or a bare ``talker_config`` dict)."""
    top = cfg.get("talker_config", cfg)
    try:
        t = top["text_config"]
        talker = TalkerConfig(
            **_shape(t),
            max_positions=t.get("max_position_embeddings", 32768),
            text_vocab_size=0,
            text_hidden_size=top["thinker_hidden_size"],
            projection_size=t["intermediate_size"],
            hidden_projection=True,
            num_experts=t.get("num_experts", t.get("num_local_experts", 0)),
            num_experts_per_tok=t["num_experts_per_tok"],
            moe_intermediate_size=t["moe_intermediate_size"],
            shared_expert_intermediate_size=t["shared_expert_intermediate_size"],
            norm_topk_prob=t.get("norm_topk_prob", False),
            num_code_groups=top["num_code_groups"],
        )
        cp = CodePredictorConfig.from_released(top["code_predictor_config"], t["hidden_size"])
        tokens = TalkerTokens(
            codec_pad=top["codec_pad_id"],
            codec_bos=top["codec_bos_id"],
            codec_eos=top["codec_eos_token_id"],
            codec_think=top.get("codec_think_id", -1),
            codec_nothink=top["codec_nothink_id"],
            codec_think_bos=top["codec_think_bos_id"],
            codec_think_eos=top["codec_think_eos_id"],
            # The text-track ids sit at the top of the whole model's config.
            tts_pad=cfg.get("tts_pad_token_id", 151671),
            tts_bos=cfg.get("tts_bos_token_id", 151672),
            tts_eos=cfg.get("tts_eos_token_id", 151673),
            im_start=cfg.get("im_start_token_id", 151644),
            im_end=cfg.get("im_end_token_id", 151645),
            speakers=_speaker_ids(top.get("speaker_id")),
        )
        # Class default 18 is not the released 24: the value must come from the file.
        accept = int(top["accept_hidden_layer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"not a Qwen3-Omni talker config ({exc.__class__.__name__}: {exc})"
        ) from exc
    return TalkerSpec(talker, cp, tokens, "qwen3_omni", accept)


def qwen3_tts_config(spec: TalkerSpec, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Qwen3-TTS ``config.json`` dict describing ``spec`` (inverse of the reader above)."""
    t, cp, ids = spec.talker, spec.code_predictor, spec.tokens
    talker = {
        "vocab_size": t.vocab_size,
        "hidden_size": t.hidden_size,
        "intermediate_size": t.intermediate_size,
        "num_hidden_layers": t.num_layers,
        "num_attention_heads": t.num_heads,
        "num_key_value_heads": t.num_kv_heads,
        "head_dim": t.head_dim,
        "rope_theta": t.rope_theta,
        "rms_norm_eps": t.rms_norm_eps,
        "max_position_embeddings": t.max_positions,
        "text_vocab_size": t.text_vocab_size,
        "text_hidden_size": t.text_hidden_size,
        "num_code_groups": t.num_code_groups,
        "hidden_act": "silu",
        "codec_pad_id": ids.codec_pad,
        "codec_bos_id": ids.codec_bos,
        "codec_eos_token_id": ids.codec_eos,
        "codec_think_id": ids.codec_think,
        "codec_nothink_id": ids.codec_nothink,
        "codec_think_bos_id": ids.codec_think_bos,
        "codec_think_eos_id": ids.codec_think_eos,
        "codec_language_id": dict(ids.languages),
        "spk_id": dict(ids.speakers),
        "spk_is_dialect": {name: ids.dialects.get(name, False) for name in ids.speakers},
        "code_predictor_config": {
            "vocab_size": cp.vocab_size,
            "hidden_size": cp.hidden_size,
            "intermediate_size": cp.intermediate_size,
            "num_hidden_layers": cp.num_layers,
            "num_attention_heads": cp.num_heads,
            "num_key_value_heads": cp.num_kv_heads,
            "head_dim": cp.head_dim,
            "rope_theta": cp.rope_theta,
            "rms_norm_eps": cp.rms_norm_eps,
            "num_code_groups": cp.num_code_groups,
            "hidden_act": "silu",
        },
    }
    out = {
        "model_type": "qwen3_tts",
        "talker_config": talker,
        "tts_pad_token_id": ids.tts_pad,
        "tts_bos_token_id": ids.tts_bos,
        "tts_eos_token_id": ids.tts_eos,
        "im_start_token_id": ids.im_start,
        "im_end_token_id": ids.im_end,
    }
    out.update(extra or {})
    return out


def read_spec(folder: CheckpointFolder) -> TalkerSpec:
    """The talker description of a Qwen3-TTS or Qwen3-Omni folder.

    Raises:
        CheckpointError: the folder holds no talker (e.g. an ASR model or a tokenizer).
    """
    cfg = folder.config
    model_type = cfg.get("model_type", "")
    if model_type == "qwen3_tts" or (
        isinstance(cfg.get("talker_config"), dict)
        and "code_predictor_config" in cfg["talker_config"]
        and "text_config" not in cfg["talker_config"]
    ):
        return spec_from_qwen3_tts(cfg)
    if isinstance(cfg.get("talker_config"), dict) and "text_config" in cfg["talker_config"]:
        return spec_from_qwen3_omni(cfg)
    raise CheckpointError(
        f"{folder.path}: no talker here (model_type {model_type!r}); expected a Qwen3-TTS or "
        "Qwen3-Omni checkpoint folder"
    )
