"""The Qwen3-Omni Thinker as a transformers causal LM, read from the whole-model folder.

The Thinker's text model is a Qwen3 mixture-of-experts decoder (q/k-norm, top-k routed SwiGLU
experts, no shared expert). For text and audio prompts its multimodal rotary positions are the
plain positions on all three axes (no image or video grid), so transformers'
``Qwen3MoeForCausalLM`` computes the same function with the same weights. Only
``thinker.model.*`` and ``thinker.lm_head.*`` are read: not the audio or vision towers, the
talker or Code2Wav, and no shard that holds none of them.

The checkpoint stores one ``nn.Linear`` per expert (``experts.{e}.gate_proj``); transformers
5.23 keeps experts fused (``gate_up_proj`` ``[E, 2I, H]`` with each expert's gate rows before its
up rows, ``down_proj`` ``[E, H, I]``), so the tensors are fused here, once, at load.

Needs the optional ``omni`` extra (transformers); nothing else in omnispeech imports it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch
from torch import nn

from omnispeech.checkpoint import CheckpointFolder, build_on_meta, load_state
from omnispeech.errors import CheckpointError, DependencyError

_EXPERT = re.compile(r"^(.*\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")

# Fields of the released thinker text config that the Qwen3-MoE config takes unchanged.
_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act",
    "max_position_embeddings", "rms_norm_eps", "attention_bias", "moe_intermediate_size",
    "num_experts", "num_experts_per_tok", "norm_topk_prob", "decoder_sparse_step",
    "mlp_only_layers",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ChatIds:
    """Ids of the Qwen3-Omni chat template (from the whole model's ``config.json``)."""

    im_start: int = 151644
    im_end: int = 151645
    user: int = 872
    assistant: int = 77091
    system: int = 8948
    audio: int = 151675  # <|audio_pad|>: one per audio token
    audio_start: int = 151669
    audio_end: int = 151670
    image: int = 151655
    video: int = 151656

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ChatIds:
        """Read the ids of a released Qwen3-Omni ``config.json`` (released values as defaults:
        ``audio_end_token_id`` is not declared by every copy of the config)."""
        thinker = cfg.get("thinker_config") or {}

        def get(section: dict[str, Any], key: str, default: int) -> int:
            return int(section.get(key, default))

        d = cls()
        return cls(
            im_start=get(cfg, "im_start_token_id", d.im_start),
            im_end=get(cfg, "im_end_token_id", d.im_end),
            user=get(cfg, "user_token_id", d.user),
            assistant=get(cfg, "assistant_token_id", d.assistant),
            system=get(cfg, "system_token_id", d.system),
            audio=get(thinker, "audio_token_id", d.audio),
            audio_start=get(thinker, "audio_start_token_id", d.audio_start),
            audio_end=get(thinker, "audio_end_token_id", d.audio_end),
            image=get(thinker, "image_token_id", d.image),
            video=get(thinker, "video_token_id", d.video),
        )


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise DependencyError(
            "running the Qwen3-Omni Thinker needs transformers: pip install 'omnispeech[omni]'"
        ) from None
    return transformers


def thinker_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The Qwen3-MoE config fields of a Qwen3-Omni ``config.json``'s thinker text model.

    Raises:
        CheckpointError: the config has no thinker text model.
    """
    try:
        text = cfg["thinker_config"]["text_config"]
    except (KeyError, TypeError):
        raise CheckpointError(
            "not a Qwen3-Omni folder: config.json has no thinker text model"
        ) from None
    out = {k: text[k] for k in _FIELDS if k in text}
    rope = text.get("rope_parameters") or {}
    theta = rope.get("rope_theta", text.get("rope_theta", 1_000_000.0))
    out["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    out["tie_word_embeddings"] = False
    return out


def fuse_experts(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoint-layout expert weights -> transformers' fused ``gate_up_proj`` / ``down_proj``."""
    out: dict[str, torch.Tensor] = {}
    experts: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    for name, tensor in state.items():
        match = _EXPERT.match(name)
        if match is None:
            out[name] = tensor
            continue
        base, e, proj = match.group(1), int(match.group(2)), match.group(3)
        experts.setdefault(base, {}).setdefault(e, {})[proj] = tensor
    for base, by_expert in experts.items():
        order = sorted(by_expert)
        if order != list(range(len(order))):
            raise CheckpointError(f"{base}: expert numbers are not 0..E-1 ({order[:8]} ...)")
        try:
            # Each expert's gate rows come before its up rows in the fused matrix.
            gate_up = [torch.cat((by_expert[e]["gate_proj"], by_expert[e]["up_proj"]))
                       for e in order]  # fmt: skip
            down = [by_expert[e]["down_proj"] for e in order]
        except KeyError as exc:
            raise CheckpointError(f"{base}: an expert lacks its {exc.args[0]} weight") from None
        out[f"{base}.gate_up_proj"] = torch.stack(gate_up)
        out[f"{base}.down_proj"] = torch.stack(down)
    return out


def load_thinker(
    folder: CheckpointFolder,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
) -> nn.Module:
    """The Thinker's text model as a ``transformers.Qwen3MoeForCausalLM`` in eval mode.

    Raises:
        CheckpointError: no Thinker text model in the folder, or mismatched keys.
        DependencyError: transformers is not installed.
    """
    tf = _transformers()
    config = tf.Qwen3MoeConfig(**thinker_config(folder.config))
    if not folder.has_prefix("thinker.model."):
        raise CheckpointError(f"{folder.path}: no thinker.model.* tensors (not a Qwen3-Omni?)")

    def build() -> nn.Module:
        # Eager experts: the fused grouped-matmul path refuses some dtypes on the CPU.
        return tf.Qwen3MoeForCausalLM._from_config(
            config, attn_implementation=attn_implementation, experts_implementation="eager"
        )

    model = build_on_meta(build)
    state = {f"model.{k}": v for k, v in folder.read("thinker.model.", dtype).items()}
    state.update({f"lm_head.{k}": v for k, v in folder.read("thinker.lm_head.", dtype).items()})
    load_state(model, fuse_experts(state), f"{folder.path} (Thinker)")
    # Rotary tables are buffers outside the checkpoint: rebuild them on a real device.
    with torch.device("cpu"):
        model.model.rotary_emb = type(model.model.rotary_emb)(config=config)
    return model.to(device=device, dtype=dtype).eval()
