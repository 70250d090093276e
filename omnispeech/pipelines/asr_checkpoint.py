"""Qwen3-ASR folders in and out: the networks and settings a folder holds, and the folder a
model writes.

Two layouts are read: the original one (``thinker.*``, as published for the ``qwen-asr``
package, and what :func:`write_asr_folder` writes) and the transformers ``-hf`` one
(``model.audio_tower``, ``model.multi_modal_projector``, ``model.language_model``).
omnispeech's own models add ``thinker.ctc_head.*`` (the CTC classifier for timestamps and
joint decoding), ``ctc_decoding_weight`` (its share of each decoding choice, see
:mod:`omnispeech.pipelines.asr_joint`) and ``support_languages`` (the languages the prompt may
name).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from omnispeech.checkpoint import CheckpointFolder, build_on_meta, load_state, save_folder
from omnispeech.core import Decoder, decoder_config_from_released
from omnispeech.encoder import AudioEncoder
from omnispeech.encoder.layouts import detect_layout
from omnispeech.errors import CheckpointError

DEFAULT_EOS = (151643, 151645)  # <|endoftext|>, <|im_end|>


@dataclasses.dataclass(frozen=True)
class ASRConfig:
    """What the pipeline needs besides the two networks' shapes."""

    eos_token_ids: tuple[int, ...] = DEFAULT_EOS
    languages: tuple[str, ...] = ()  # the checkpoint's own list; empty = the built-in 30
    # CTC share of joint decoding; None: not declared (the pipeline's default for a folder
    # with a CTC head, 0 without one).
    ctc_weight: float | None = None


@dataclasses.dataclass
class ASRParts:
    """The networks and settings read from one folder (weights on CPU, in the asked dtype)."""

    encoder: AudioEncoder
    decoder: Decoder
    lm_head: nn.Linear | None  # None: tied to the decoder's embedding table
    ctc_head: nn.Linear | None  # None: the released checkpoints, which have none
    config: ASRConfig


def read_asr_folder(folder: CheckpointFolder, dtype: torch.dtype) -> ASRParts:
    """Build every network of a Qwen3-ASR folder on the meta device and load its tensors.

    Raises:
        CheckpointError: not a Qwen3-ASR model, no text config, an untied head that is
            missing, or keys that differ from the networks' (named).
    """
    cfg = folder.config
    if cfg.get("model_type") != "qwen3_asr":
        raise CheckpointError(
            f"{folder.path}: not a Qwen3-ASR checkpoint (model_type "
            f"{cfg.get('model_type', 'missing')!r}); `omnispeech asr` needs a Qwen3-ASR folder"
        )
    if isinstance(cfg.get("thinker_config"), dict):  # original layout
        text_cfg = cfg["thinker_config"].get("text_config")
        text_prefix, head_key = "thinker.model.", "thinker.lm_head.weight"
    else:  # transformers -hf layout
        text_cfg = cfg.get("text_config")
        text_prefix, head_key = "model.language_model.", "lm_head.weight"
    if not isinstance(text_cfg, dict):
        raise CheckpointError(f"{folder.path}: config.json has no text_config")
    dec_cfg = decoder_config_from_released(text_cfg)
    layout = detect_layout(folder)
    encoder = build_on_meta(lambda: AudioEncoder(layout.config))
    load_state(encoder.net, layout.read(folder, dtype), f"{folder.path} (audio encoder)")
    decoder = build_on_meta(lambda: Decoder(dec_cfg))
    load_state(decoder, folder.read(text_prefix, dtype), f"{folder.path} (text decoder)")
    return ASRParts(
        encoder=encoder,
        decoder=decoder,
        lm_head=_read_head(folder, head_key, decoder, dtype),
        ctc_head=_read_ctc_head(folder, dtype),
        config=ASRConfig(
            eos_token_ids=_eos_ids(folder),
            languages=tuple(cfg.get("support_languages", ())),
            ctc_weight=_ctc_weight(folder),
        ),
    )


def _ctc_weight(folder: CheckpointFolder) -> float | None:
    value = folder.config.get("ctc_decoding_weight")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise CheckpointError(
            f"{folder.path}: ctc_decoding_weight must be a number in [0, 1], got {value!r}"
        )
    return float(value)


def _read_head(
    folder: CheckpointFolder, head_key: str, decoder: Decoder, dtype: torch.dtype
) -> nn.Linear | None:
    """The output head, or None when the model uses its embedding table.

    Each layout follows its reference. The original layout (qwen-asr) ties the head to the
    embedding after loading when the config says tie_word_embeddings, so a stored
    ``thinker.lm_head.weight`` (the released folders hold one) is never used. transformers (the
    ``-hf`` layout) keeps a stored head that differs from the embedding.
    """
    dec_cfg = decoder.cfg
    stored = head_key in folder.keys(head_key)
    original = head_key.startswith("thinker.")
    if stored and not (original and dec_cfg.tie_word_embeddings):
        weight = folder.read(head_key, dtype)[""]
        if dec_cfg.tie_word_embeddings and torch.equal(weight, decoder.embed_tokens.weight):
            return None
        head = build_on_meta(lambda: nn.Linear(dec_cfg.hidden_size, dec_cfg.vocab_size, bias=False))
        load_state(head, {"weight": weight}, f"{folder.path} (lm head)")
        return head
    if not stored and not dec_cfg.tie_word_embeddings:
        raise CheckpointError(
            f"{folder.path}: the config unties the output head but {head_key} is missing"
        )
    return None


def _read_ctc_head(folder: CheckpointFolder, dtype: torch.dtype) -> nn.Linear | None:
    prefix = "thinker.ctc_head."
    if not folder.keys(prefix):
        return None
    state = folder.read(prefix, dtype)
    classes, width = state["weight"].shape
    head = build_on_meta(lambda: nn.Linear(width, classes))
    load_state(head, state, f"{folder.path} (CTC head)")
    return head


def _eos_ids(folder: CheckpointFolder) -> tuple[int, ...]:
    """End tokens: ``generation_config.json`` wins over ``config.json``, as in the reference."""
    cfg = folder.config
    eos = cfg.get("eos_token_id") or cfg.get("thinker_config", {}).get("eos_token_id")
    gen_file = folder.path / "generation_config.json"
    if gen_file.is_file():
        eos = json.loads(gen_file.read_text()).get("eos_token_id", eos)
    if isinstance(eos, list | tuple):
        return tuple(eos)
    return (eos,) if eos else DEFAULT_EOS


def write_asr_folder(  # noqa: PLR0913 - every part of the folder, each named
    path: str | Path,
    parts: ASRParts,
    audio_pad_id: int,
    tokenizer,
    dtype: torch.dtype | None = None,
) -> None:
    """Write the original Qwen3-ASR layout (``thinker.*``) with the tokenizer file.

    Args:
        path: the folder (created).
        parts: the networks (float, not quantized) and settings.
        audio_pad_id: the tokenizer's ``<|audio_pad|>`` id (the config's ``audio_token_id``).
        tokenizer: a ``tokenizers.Tokenizer``, saved as ``tokenizer.json``.
        dtype: store floating tensors in this type; None keeps the modules' own.
    """
    enc, dec = parts.encoder.cfg, parts.decoder.cfg
    audio = {k: v for k, v in enc.to_dict().items() if k != "pad_short_batches_to_longest"}
    text = {
        "model_type": "qwen3",
        "vocab_size": dec.vocab_size,
        "hidden_size": dec.hidden_size,
        "intermediate_size": dec.intermediate_size,
        "num_hidden_layers": dec.num_layers,
        "num_attention_heads": dec.num_heads,
        "num_key_value_heads": dec.num_kv_heads,
        "head_dim": dec.head_dim,
        "rope_theta": dec.rope_theta,
        "rms_norm_eps": dec.rms_norm_eps,
        "max_position_embeddings": dec.max_positions,
        "tie_word_embeddings": parts.lm_head is None,
    }
    config: dict = {
        "model_type": "qwen3_asr",
        "thinker_config": {
            "audio_config": {**audio, "activation_function": "gelu"},
            "text_config": text,
            "audio_token_id": audio_pad_id,
        },
        "eos_token_id": list(parts.config.eos_token_ids),
    }
    if parts.config.languages:
        config["support_languages"] = list(parts.config.languages)
    if parts.ctc_head is not None and parts.config.ctc_weight is not None:
        config["ctc_decoding_weight"] = parts.config.ctc_weight
    tensors = {f"thinker.audio_tower.{k}": v for k, v in parts.encoder.net.state_dict().items()}
    tensors.update({f"thinker.model.{k}": v for k, v in parts.decoder.state_dict().items()})
    if parts.lm_head is not None:
        tensors["thinker.lm_head.weight"] = parts.lm_head.weight
    if parts.ctc_head is not None:
        tensors.update({f"thinker.ctc_head.{k}": v for k, v in parts.ctc_head.state_dict().items()})
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    save_folder(path, config, tensors)
    tokenizer.save(str(Path(path) / "tokenizer.json"))


__all__ = ["DEFAULT_EOS", "ASRConfig", "ASRParts", "read_asr_folder", "write_asr_folder"]
