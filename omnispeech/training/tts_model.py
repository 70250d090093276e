"""The trainable Qwen3-TTS model: the released :class:`Talker` (with its :class:`CodePredictor`)
built from a training config, its two teacher-forced losses, and the export.

Losses on one :class:`~omnispeech.training.tts_batch.TTSBatch` (all positions at once):

* talker: cross-entropy of ``codec_head`` over the talker vocabulary at every position that
  produces a frame (target: its codebook-0 code) and at the position after the last frame
  (target: ``codec_eos``);
* code predictor: for every frame, the predictor's causal pass over ``[h, E0(c0), E1(c1), ...,
  E_{K-2}(c_{K-2})]`` (``h`` the talker's final hidden state at the position that produced the
  frame, ``E0`` the talker's codec embedding, ``Ej`` the predictor's table ``j - 1``); position
  ``j`` scores codebook ``j`` with ``lm_head[j - 1]``. The mean over codebooks 1..K-1 is weighted
  by ``predictor_weight``. This is the per-frame loop of
  :meth:`CodePredictor.predict` with every sampled code replaced by the true one.

Special ids follow the release, shifted with the codebook size ``C``: the talker vocabulary is
``C + 1024`` and a released id ``i >= 2048`` becomes ``i - 2048 + C`` (identical for ``C = 2048``).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

from omnispeech.checkpoint import save_folder
from omnispeech.errors import ConfigError
from omnispeech.pipelines.tts_frontend import (
    SPECIAL_TOKENS,
    BpeFrontend,
    PhonemeTokenizer,
    TextFrontend,
)
from omnispeech.pipelines.tts_generation import write_generation
from omnispeech.pipelines.tts_single import ARRANGEMENT_KEY, arrangement_entry
from omnispeech.talker import (
    CodePredictorConfig,
    GenerationConfig,
    SpeakerEncoder,
    Talker,
    TalkerConfig,
    TalkerSpec,
    TalkerTokens,
)
from omnispeech.talker.config import qwen3_tts_config
from omnispeech.training.tts_batch import IGNORE, TTSBatch
from omnispeech.training.tts_config import TTSModelConfig, TTSSamplingConfig
from omnispeech.training.tts_data import TTS_SPECIALS, language_key

RELEASED_CODEBOOK = 2048  # the released ids below assume 2048-entry codebooks
CONTROL_IDS = 1024  # talker ids above the codebook: control tokens, languages, speakers
# Language tags of the release (Qwen3-TTS config.json, codec_language_id).
RELEASED_LANGUAGES = {
    "english": 2050, "german": 2053, "spanish": 2054, "chinese": 2055, "japanese": 2058,
    "french": 2061, "korean": 2064, "russian": 2069, "italian": 2070, "portuguese": 2071,
}  # fmt: skip
# Other languages get tags from here on: after the released control ids (2148-2157), before
# the released speaker ids (2861 on).
FIRST_NEW_LANGUAGE = 2300


def talker_tokens(
    tokenizer: Tokenizer | PhonemeTokenizer, codebook_size: int, languages: Sequence[str]
) -> TalkerTokens:
    """The special ids of a talker for ``codebook_size``-entry codebooks, the text specials of
    ``tokenizer`` (a BPE with :data:`TTS_SPECIALS`, or a phoneme inventory with its
    ``SPECIAL_TOKENS``) and one codec tag per language (ISO 639 codes)."""
    shift = codebook_size - RELEASED_CODEBOOK
    tags: dict[str, int] = {}
    extra = FIRST_NEW_LANGUAGE
    for code in languages:
        name = language_key(code)
        if name in RELEASED_LANGUAGES:
            tags[name] = RELEASED_LANGUAGES[name] + shift
        else:
            tags[name] = extra + shift
            extra += 1
    names = SPECIAL_TOKENS if isinstance(tokenizer, PhonemeTokenizer) else TTS_SPECIALS
    missing = [t for t in names if tokenizer.token_to_id(t) is None]
    if missing:
        raise ConfigError(f"the tokenizer lacks the TTS special tokens {missing}")
    sid = tokenizer.token_to_id
    defaults = TalkerTokens()
    return TalkerTokens(
        codec_pad=defaults.codec_pad + shift,
        codec_bos=defaults.codec_bos + shift,
        codec_eos=defaults.codec_eos + shift,
        codec_think=defaults.codec_think + shift,
        codec_nothink=defaults.codec_nothink + shift,
        codec_think_bos=defaults.codec_think_bos + shift,
        codec_think_eos=defaults.codec_think_eos + shift,
        tts_pad=sid("<|tts_pad|>"),
        tts_bos=sid("<|tts_text_bos|>"),
        tts_eos=sid("<|tts_text_eod|>"),
        im_start=sid("<|im_start|>"),
        im_end=sid("<|im_end|>"),
        languages=tags,
    )


def talker_spec(
    cfg: TTSModelConfig,
    tokens: TalkerTokens,
    num_codebooks: int,
    codebook_size: int,
    text_vocab: int,
) -> TalkerSpec:
    """The :class:`TalkerSpec` of the model to train (codec facts from the codec folder)."""
    talker = TalkerConfig(
        vocab_size=codebook_size + CONTROL_IDS,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        num_kv_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        rope_theta=cfg.rope_theta,
        max_positions=cfg.max_positions,
        text_vocab_size=text_vocab,
        text_hidden_size=cfg.text_hidden_size,
        # The released reader takes the projection's inner width from text_hidden_size.
        projection_size=cfg.text_hidden_size,
        num_code_groups=num_codebooks,
    )
    predictor = CodePredictorConfig(
        vocab_size=codebook_size,
        hidden_size=cfg.predictor_hidden_size,
        intermediate_size=cfg.predictor_intermediate_size,
        num_layers=cfg.predictor_layers,
        num_heads=cfg.predictor_heads,
        num_kv_heads=cfg.predictor_kv_heads,
        head_dim=cfg.predictor_head_dim,
        rope_theta=cfg.rope_theta,
        num_code_groups=num_codebooks,
        input_size=cfg.hidden_size,
    )
    return TalkerSpec(talker, predictor, tokens, "qwen3_tts")


class TrainableTTS(nn.Module):
    """A :class:`Talker` under ``talker.`` (the released key names) plus its training losses.

    Args:
        spec: the talker's shapes and ids (see :func:`talker_spec`).
        predictor_weight: weight of the code predictor's loss.
    """

    def __init__(self, spec: TalkerSpec, predictor_weight: float = 1.0) -> None:
        super().__init__()
        self.talker = Talker(spec)
        self.predictor_weight = predictor_weight

    def embed(self, batch: TTSBatch) -> torch.Tensor:
        """Talker inputs ``[B, L, hidden]``: text track + codec track (+ x-vector slot)."""
        talker = self.talker
        x = talker.embed_text(batch.text_ids)
        ids = batch.codec_ids
        tables = [talker.model.codec_embedding, *talker.code_predictor.model.codec_embedding]
        for k, table in enumerate(tables):
            present = ids[..., k] >= 0
            x = x + table(ids[..., k].clamp_min(0)) * present[..., None].to(x.dtype)
        if batch.speakers is not None:
            slot = batch.speaker_mask[..., None]
            x = torch.where(slot, x + batch.speakers[:, None].to(x.dtype), x)
        return x

    def forward(self, batch: TTSBatch) -> dict[str, torch.Tensor]:
        """Losses of one batch: ``total``, ``talker``, ``predictor`` (nats per prediction) and
        ``accuracy`` (share of codebook-0 / end targets predicted by arg-max)."""
        talker, cp = self.talker, self.talker.code_predictor
        hidden = talker.model(self.embed(batch))  # [B, L, H]
        logits = talker.codec_head(hidden)
        mask = batch.labels != IGNORE
        talker_loss = F.cross_entropy(logits[mask].float(), batch.labels[mask])
        accuracy = (logits[mask].argmax(-1) == batch.labels[mask]).float().mean()
        # Code predictor: one causal pass of K positions per frame, all frames at once.
        codes = batch.frame_codes  # [M, K]
        K = codes.shape[1]
        h = hidden.flatten(0, 1)[batch.frame_index]  # [M, H]
        inputs = [h, talker.model.codec_embedding(codes[:, 0])]
        inputs += [cp.model.codec_embedding[j - 1](codes[:, j]) for j in range(1, K - 1)]
        states = cp.model(cp.small_to_mtp_projection(torch.stack(inputs, dim=1)))  # [M, K, Hc]
        per_group = [
            F.cross_entropy(cp.lm_head[j - 1](states[:, j]).float(), codes[:, j])
            for j in range(1, K)
        ]
        predictor_loss = torch.stack(per_group).mean()
        total = talker_loss + self.predictor_weight * predictor_loss
        return {
            "total": total,
            "talker": talker_loss,
            "predictor": predictor_loss,
            "accuracy": accuracy,
        }

    def export(
        self,
        folder: str | Path,
        tokenizer: Tokenizer | TextFrontend,
        codec_dir: str | Path,
        speaker_encoder: SpeakerEncoder | None = None,
        cfg: TTSModelConfig | None = None,
        frames_per_token: float = 3.5,
        sampling: TTSSamplingConfig | None = None,
        guidance_dropout: float = 0.0,
    ) -> Path:
        """Write a Qwen3-TTS folder that ``TTS.from_pretrained`` loads unchanged.

        ``config.json`` + ``model.safetensors`` (``talker.*``, and ``speaker_encoder.*`` for a
        model with a speaker slot: a "base" model that clones, else "custom_voice" without
        built-in speakers), the text front end's files (``tokenizer.json`` for a BPE
        ``tokenizer``; ``text_frontend.json`` for a phoneme front end, which
        ``load_frontend`` reads back), ``speech_tokenizer/`` (a copy of the codec
        folder) and ``generation_config.json`` (the released sampling settings, or
        ``sampling``'s temperatures and top-k). A model
        trained on the single stream (``cfg.arrangement`` "single") records it and its policy
        under ``talker_arrangement`` in ``config.json``: the released readers ignore that key,
        and ``TTS`` runs such a model with its single-stream loop, feeding text at
        ``frames_per_token`` (the training data's mean speech frames per text token), and the
        share of unconditioned sequences it learnt (``guidance_dropout``, when above 0: the
        pipeline allows guidance only then).
        """
        out = Path(folder)
        tensors = {f"talker.{k}": v for k, v in self.talker.state_dict().items()}
        extra: dict = {"tts_model_type": "custom_voice"}
        if speaker_encoder is not None:
            tensors.update(
                {f"speaker_encoder.{k}": v for k, v in speaker_encoder.state_dict().items()}
            )
            extra = {
                "tts_model_type": "base",
                "speaker_encoder_config": speaker_encoder.cfg.to_dict(),
            }
        extra["tokenizer_type"] = "qwen3_tts_tokenizer_12hz"
        if cfg is not None and cfg.arrangement == "single":
            policy = cfg.single_policy(frames_per_token)
            extra[ARRANGEMENT_KEY] = arrangement_entry(policy, guidance_dropout)
        save_folder(out, qwen3_tts_config(self.talker.spec, extra), tensors)
        frontend = tokenizer if isinstance(tokenizer, TextFrontend) else BpeFrontend(tokenizer)
        frontend.check(self.talker.spec.tokens)  # the folder must load as it is written
        frontend.save(out)
        codec_copy = out / "speech_tokenizer"
        if codec_copy.exists():
            shutil.rmtree(codec_copy)
        shutil.copytree(codec_dir, codec_copy)
        gen = GenerationConfig()
        if sampling is not None:
            gen = gen.replace(
                talker=gen.talker.replace(temperature=sampling.temperature, top_k=sampling.top_k),
                code_predictor=gen.code_predictor.replace(
                    temperature=sampling.predictor_temperature, top_k=sampling.predictor_top_k
                ),
                guidance=sampling.guidance,
            )
        write_generation(out / "generation_config.json", gen)
        return out
