"""The multi-token predictor (MTP): codebooks 1..K-1 of one frame from the talker's state.

Per frame the predictor runs a fresh causal pass over ``[h, E0(c0), E1(c1), ...]`` where ``h``
is the talker's final-normed hidden state and ``c0`` the codebook-0 code the talker chose:
position ``j + 1`` predicts codebook ``j + 1`` with head ``j`` and its code is embedded with
embedding ``j`` for the next position. Embeddings live in the talker's width; a projection to
the predictor's width exists only when the two differ (Qwen3-TTS 1.7B).

The loop is explicit: one KV cache of ``K`` positions is reserved per batch size and rewound
every frame instead of being rebuilt.
Module names equal the checkpoint keys under ``talker.code_predictor.``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from omnispeech.checkpoint import CheckpointFolder, load_module, resolve_folder, save_folder
from omnispeech.core import DecoderCache, DecoderStack
from omnispeech.core.sampling import Generators, SamplingConfig, sample
from omnispeech.talker.config import CodePredictorConfig, read_spec
from omnispeech.talker.fused_predict import fused_predict

PREFIX = "talker.code_predictor."
OWN_MODEL_TYPE = "omnispeech_code_predictor"


class CodePredictorModel(DecoderStack):
    """The predictor's decoder plus ``codec_embedding``: K-1 tables ``[vocab, input_size]``."""

    def __init__(self, cfg: CodePredictorConfig) -> None:
        super().__init__(cfg.decoder())
        self.codec_embedding = nn.ModuleList(
            nn.Embedding(cfg.vocab_size, cfg.input_size) for _ in range(cfg.num_code_groups - 1)
        )


class CodePredictor(nn.Module):
    """Residual-codebook predictor of the Qwen3-TTS and Qwen3-Omni talkers.

    Args:
        cfg: shapes (``num_code_groups`` K counts codebook 0 too).
    """

    def __init__(self, cfg: CodePredictorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = CodePredictorModel(cfg)
        self.lm_head = nn.ModuleList(
            nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
            for _ in range(cfg.num_code_groups - 1)
        )
        if cfg.input_size != cfg.hidden_size:
            self.small_to_mtp_projection = nn.Linear(cfg.input_size, cfg.hidden_size, bias=True)
        else:
            self.small_to_mtp_projection = nn.Identity()
        self._cache: DecoderCache | None = None

    @property
    def num_code_groups(self) -> int:
        return self.cfg.num_code_groups

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> CodePredictor:
        """Load ``talker.code_predictor.*`` from a Qwen3-TTS or Qwen3-Omni folder, or a folder
        written by :meth:`save_pretrained`; nothing else is read.

        Raises:
            CheckpointError: no code predictor in the folder, or mismatched keys.
        """
        folder = CheckpointFolder(resolve_folder(name_or_path))
        if folder.config.get("model_type") == OWN_MODEL_TYPE:
            cfg = CodePredictorConfig.from_dict(folder.config["code_predictor"])
        else:
            cfg = read_spec(folder).code_predictor
        return load_module(folder, lambda: cls(cfg), PREFIX, dtype, device, "code predictor")

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` + ``model.safetensors`` with the released names under
        ``talker.code_predictor.``."""
        config = {"model_type": OWN_MODEL_TYPE, "code_predictor": self.cfg.to_dict()}
        save_folder(path, config, {PREFIX + k: v for k, v in self.state_dict().items()})

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return self.small_to_mtp_projection(x)

    def logits(
        self, inputs_embeds: torch.Tensor, head: int, cache: DecoderCache | None = None
    ) -> torch.Tensor:
        """One decoder pass in the talker's width -> logits of head ``head``.

        Args:
            inputs_embeds: ``[B, L, input_size]``, e.g. ``[h, E0(c0)]`` for the first step.
            head: which codebook to score, 0-based over the residual ones (head j -> group j+1).
            cache: optional KV cache continued from earlier steps of the same frame.

        Returns:
            ``[B, L, vocab]`` logits at every position.
        """
        hidden = self.model(self._project(inputs_embeds), cache)
        return self.lm_head[head](hidden)

    def _frame_cache(self, batch: int, like: torch.Tensor) -> DecoderCache:
        cache = self._cache
        ref = cache.layers[0].keys if cache is not None else None
        if (
            ref is None
            or ref.shape[0] != batch
            or ref.dtype != like.dtype
            or ref.device != like.device
        ):
            cache = self.model.new_cache(batch, self.cfg.num_code_groups, like.device, like.dtype)
            self._cache = cache
        cache.truncate(0)
        return cache

    @torch.inference_mode()
    def predict(
        self,
        hidden: torch.Tensor,
        code0_embed: torch.Tensor,
        sampling: SamplingConfig,
        generator: Generators = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codebooks 1..K-1 of one frame.

        Args:
            hidden: ``[B, input_size]`` talker hidden state (after its final norm) at the
                position that chose codebook 0.
            code0_embed: ``[B, input_size]`` the talker's embedding of that codebook-0 code.
            sampling: how each residual code is chosen (no repetition penalty is applied: the
                released models use none here).
            generator: randomness for sampling (or one generator per row).

        Returns:
            ``(codes, embed_sum)``: codes ``[B, K-1]`` int64 for groups 1..K-1, and
            ``[B, input_size]`` the sum of their embeddings (the residual part of the talker's
            next input).
        """
        # One stream of a 4-bit predictor: the whole frame in one kernel call (None otherwise).
        fused = fused_predict(self, hidden, code0_embed, sampling, generator)
        if fused is not None:
            return fused
        B = hidden.shape[0]
        cache = self._frame_cache(B, hidden)
        x = torch.stack((hidden, code0_embed), dim=1)
        codes = torch.empty(B, self.cfg.num_code_groups - 1, dtype=torch.long, device=hidden.device)
        embed_sum = torch.zeros_like(hidden)
        for j in range(self.cfg.num_code_groups - 1):
            logits = self.logits(x, j, cache)[:, -1]
            code = sample(logits, sampling, generator)
            codes[:, j] = code
            emb = self.model.codec_embedding[j](code)
            embed_sum += emb
            x = emb[:, None]
        return codes, embed_sum
