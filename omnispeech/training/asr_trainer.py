"""The recognition training loop: one process or many (``torchrun``; gloo on CPU, NCCL on GPU).

Each step: a batch of augmented utterances per process, the attention decoder's cross-entropy
on the answer plus the weighted CTC loss on the encoder, gradients averaged by DDP, AdamW with
warm-up and cosine decay. Resuming is exact: a checkpoint holds the weights, the optimizer, the
step and every process's random state, and batches depend only on (seed, step, rank).

Output folder::

    OUT/tokenizer.json                 trained once, before the first step (kept on resume)
    OUT/checkpoints/step-00001000.pt   training state (torch.save; read with weights_only)
    OUT/model/                         the latest export: a Qwen3-ASR folder
    OUT/log.jsonl                      losses per logged step, held-out error rates per save
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from omnispeech.errors import ConfigError
from omnispeech.training.asr_config import ASRTrainConfig
from omnispeech.training.asr_data import (
    ASRBatcher,
    Transcribed,
    read_transcribed,
    spread_evenly,
    tokenizer_texts,
    train_tokenizer,
)
from omnispeech.training.asr_model import TrainableASR
from omnispeech.training.run_state import OneOptimizerRun
from omnispeech.training.workers import Workers

LOSS_NAMES = ("total", "attention", "ctc", "accuracy")


class ASRTrainer(OneOptimizerRun):
    """Trains a recogniser described by an :class:`ASRTrainConfig` into ``out_dir``.

    Args:
        cfg: the run.
        out_dir: tokenizer, checkpoints, exported model and log.
        workers: this process's place (default: from the ``torchrun`` environment).
    """

    def __init__(
        self, cfg: ASRTrainConfig, out_dir: str | Path, workers: Workers | None = None
    ) -> None:
        if not cfg.data.train:
            raise ConfigError("no training data: pass --train MANIFEST (or set data.train)")
        self.cfg = cfg
        self.out = Path(out_dir)
        self.workers = workers or Workers.from_env()
        dc = cfg.data
        self.train_set, self.skipped = read_transcribed(
            dc.train, dc.train_split, dc.languages, dc.max_seconds
        )
        self.languages = sorted({u.language for u in self.train_set})
        self.valid_set: list[Transcribed] = []
        if dc.valid:
            held, _ = read_transcribed(dc.valid, dc.valid_split, self.languages, dc.max_seconds)
            self.valid_set = spread_evenly(held, dc.valid_utterances)
        self.tokenizer = self._tokenizer()
        if self.tokenizer.get_vocab_size() > cfg.model.vocab_size:
            raise ConfigError(
                f"the tokenizer has {self.tokenizer.get_vocab_size()} entries but "
                f"model.vocab_size is {cfg.model.vocab_size}"
            )
        dev = self.workers.device
        torch.manual_seed(cfg.run.seed)  # every process builds the same initial weights
        self.model = TrainableASR(cfg.model).to(dev)
        oc = cfg.optim
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": oc.weight_decay}, {"params": no_decay}],
            lr=oc.lr,
            betas=oc.betas,
            weight_decay=0.0,
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.batcher = ASRBatcher(
            self.train_set,
            self.tokenizer,
            cfg.augment,
            dc.batch_seconds,
            dc.max_batch,
            cfg.run.seed,
            self.model.encoder.cfg.num_tokens,
        )
        self.step = 0
        self.stopped_by: signal.Signals | None = None  # set by fit() when a signal stopped it
        torch.manual_seed(cfg.run.seed * 7919 + 1 + self.workers.rank)
        self.ddp: nn.Module = (
            DistributedDataParallel(self.model) if self.workers.world_size > 1 else self.model
        )

    def _tokenizer(self) -> Tokenizer:
        """The run's tokenizer: given, or trained once on the training transcripts by the
        main process (the others wait and read the same file)."""
        if self.cfg.data.tokenizer_vocab:
            return Tokenizer.from_file(self.cfg.data.tokenizer_vocab)
        path = self.out / "tokenizer.json"
        if self.workers.is_main and not path.is_file():
            self.out.mkdir(parents=True, exist_ok=True)
            texts = tokenizer_texts(self.train_set, self.languages)
            tok = train_tokenizer(texts, self.cfg.model.vocab_size)
            tmp = path.with_suffix(".tmp")
            tok.save(str(tmp))
            tmp.replace(path)
        self.workers.barrier()
        return Tokenizer.from_file(str(path))

    # -- export --------------------------------------------------------------------------------
    def export(self, folder: Path | None = None) -> Path:
        """Write the current model as a Qwen3-ASR folder (default ``OUT/model``)."""
        return self.model.export(folder or self.out / "model", self.tokenizer, self.languages)

    # -- one step ------------------------------------------------------------------------------
    def _batch(self) -> tuple[Any, dict[str, float]]:
        batch = self.batcher.batch(self.step, self.workers.rank).to(self.workers.device)
        return batch, {"seconds": batch.seconds}

    def validate(self) -> dict[str, float]:
        """Character and word error rates on the held-out utterances, decoded as the exported
        model decodes (greedy, joint with the CTC head at the weight it declares, which is
        logged with them)."""
        from omnispeech.eval.text import EditCounts, edit_counts

        if not self.valid_set:
            return {}
        asr = self.model.to_pipeline(self.tokenizer, self.languages)
        self.model.eval()
        counts = []
        with torch.inference_mode():
            for utt in self.valid_set:
                hyp = asr.transcribe(utt.path, language=utt.language).text
                counts.append(edit_counts(utt.text, hyp))
        self.model.train()
        total = EditCounts.total(counts)
        return {"valid_cer": total.cer, "valid_wer": total.wer, "valid_ctc_weight": asr.ctc_weight}

    # -- the loop ------------------------------------------------------------------------------
    loss_names = LOSS_NAMES
    run_name = "train asr"

    def _postfix(self, losses: dict[str, float]) -> dict[str, str]:
        return {
            "loss": f"{losses['attention']:.3f}",
            "ctc": f"{losses['ctc']:.2f}",
        }
