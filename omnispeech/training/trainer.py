"""The codec training loop: one process or many (``torchrun``; gloo on CPU, NCCL on GPU).

Each step: the codec reconstructs a batch of segments; the discriminators learn to tell real
from reconstructed (least squares); the codec learns from the multi-scale mel loss, the
commitment loss, the adversarial loss and feature matching, and (when configured) from what
a frozen speech recogniser hears in it (:mod:`omnispeech.training.recognizer_loss`) and from
how well a small head predicts the log-mel from its latent (:mod:`omnispeech.training.latent_mel`).
Gradients are averaged across processes by DDP; codebook statistics are synced by the
quantizer itself.

Resuming is exact: a checkpoint holds the weights, both optimizers and schedules, the step and
every process's random-number state, and batches depend only on (seed, step, rank), so a
resumed run computes the same losses as an uninterrupted one.

Output folder::

    OUT/checkpoints/step-00001000.pt   training state (torch.save; read with weights_only)
    OUT/model/                         the latest export: config.json + model.safetensors
    OUT/log.jsonl                      one line of losses per logged step (+ validation)
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from omnispeech.audio import MultiScaleMelLoss
from omnispeech.errors import ConfigError
from omnispeech.kernels import use_backend
from omnispeech.kernels.compiled import compiled_training
from omnispeech.training.codec_model import TrainableCodec
from omnispeech.training.config import CodecTrainConfig
from omnispeech.training.data import SegmentSampler, list_audio
from omnispeech.training.discriminators import CodecDiscriminators
from omnispeech.training.latent_mel import LatentMelHead
from omnispeech.training.loop import fit_steps
from omnispeech.training.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from omnispeech.training.recognizer_loss import RecognizerLoss
from omnispeech.training.workers import CheckpointedRun, Workers, rng_state, set_rng_state

LOSS_NAMES = (
    "total", "mel", "commitment", "adversarial", "feature_matching", "discriminator", "recognizer",
    "latent_mel",
)  # fmt: skip


class CodecTrainer(CheckpointedRun):
    """Trains a codec described by a :class:`CodecTrainConfig` into ``out_dir``.

    Args:
        cfg: the run.
        out_dir: checkpoints, exported model and log.
        workers: this process's place (default: from the ``torchrun`` environment).
        validate: called on the exported model folder after each save on the main process;
            returns numbers to log (e.g. held-out mel distance).
    """

    def __init__(
        self,
        cfg: CodecTrainConfig,
        out_dir: str | Path,
        workers: Workers | None = None,
        validate: Callable[[Path], dict[str, float]] | None = None,
    ) -> None:
        if not cfg.data.train:
            raise ConfigError(
                "no training audio: pass --train FOLDER_OR_MANIFEST (or set data.train)"
            )
        self.cfg = cfg
        self.out = Path(out_dir)
        self.workers = workers or Workers.from_env()
        if validate is None and cfg.data.valid:
            validate = held_out_validation(
                list_audio(cfg.data.valid, cfg.data.valid_split, cfg.model.sample_rate)
            )
        self.validate = validate
        dev = self.workers.device
        # Every process builds the same initial weights from the run's seed.
        torch.manual_seed(cfg.run.seed)
        self.codec = TrainableCodec(cfg.model, cfg.run)
        if cfg.data.finetune:
            self.codec.finetune_decoder(cfg.data.finetune)
        self.codec.to(dev)
        lc = cfg.loss
        self.disc = CodecDiscriminators(lc.mpd_periods, lc.stft_windows, lc.disc_channels).to(dev)
        self.mel_loss = MultiScaleMelLoss(cfg.model.sample_rate, lc.mel_windows, lc.mel_bins).to(
            dev
        )
        self.recognizer: RecognizerLoss | None = None
        if lc.recognizer > 0:
            if not cfg.data.recognizer:
                raise ConfigError(
                    "loss.recognizer > 0 needs data.recognizer: a Qwen3-ASR folder or 'bundled'"
                )
            self.recognizer = RecognizerLoss(cfg.data.recognizer, cfg.model.sample_rate).to(dev)
        self.latent_head: LatentMelHead | None = None
        if lc.latent_mel > 0:
            if cfg.data.finetune:
                raise ConfigError(
                    "loss.latent_mel trains the encoder, which a decoder fine-tune "
                    "(data.finetune) keeps frozen: set it to 0"
                )
            self.latent_head = LatentMelHead(
                cfg.model.encoder_dim, cfg.model.hop_length, cfg.model.sample_rate
            ).to(dev)
        oc = cfg.optim
        params = [p for p in self.codec.parameters() if p.requires_grad]
        if self.latent_head is not None:
            params += list(self.latent_head.parameters())
        self.opt_g = torch.optim.AdamW(params, oc.lr, betas=oc.betas, weight_decay=oc.weight_decay)
        self.opt_d = torch.optim.AdamW(
            self.disc.parameters(), oc.disc_lr, betas=oc.betas, weight_decay=oc.weight_decay
        )
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.opt_g, oc.lr_decay)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.opt_d, oc.lr_decay)
        self.sampler = SegmentSampler(
            list_audio(cfg.data.train, cfg.data.train_split, cfg.model.sample_rate),
            cfg.model.sample_rate, cfg.data.segment_seconds,
            cfg.run.seed,
        )  # fmt: skip
        self.step = 0
        self.stopped_by: signal.Signals | None = None  # set by fit() when a signal stopped it
        # After the shared initialisation each process draws its own random numbers.
        torch.manual_seed(cfg.run.seed * 7919 + 1 + self.workers.rank)
        self.h_model: nn.Module | None = self.latent_head
        if self.workers.world_size > 1:
            self.g_model: nn.Module = DistributedDataParallel(self.codec)
            self.d_model: nn.Module = DistributedDataParallel(self.disc)
            if self.latent_head is not None:
                self.h_model = DistributedDataParallel(self.latent_head)
        else:
            self.g_model, self.d_model = self.codec, self.disc

    # -- checkpoints ---------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        head = {} if self.latent_head is None else {"latent_head": self.latent_head.state_dict()}
        return {
            **head,
            "codec": self.codec.state_dict(),
            "discriminators": self.disc.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        if self.latent_head is not None:
            if "latent_head" not in state:
                raise ConfigError(
                    "this checkpoint was trained without loss.latent_mel; resume it with the "
                    "config it was trained with"
                )
            self.latent_head.load_state_dict(state["latent_head"])
        self.codec.load_state_dict(state["codec"])
        self.disc.load_state_dict(state["discriminators"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        # Where the schedule stands comes from the checkpoint, how fast it decays from this
        # run's config: the same on a plain resume, while a resume with a smaller
        # optim.lr_decay anneals the learning rates from where they are (a cool-down).
        self.sched_g.gamma = self.sched_d.gamma = self.cfg.optim.lr_decay

    def export_model(self) -> None:
        self.codec.export(self.out / "model")

    def export_initial(self, folder: str | Path) -> Path:
        """Export the untrained codec as a baseline, after one quantizer pass over the first
        batch (which initialises the codebooks, by k-means when enabled); the run itself is
        left exactly as it was (weights and random state)."""
        snapshot = {k: v.clone() for k, v in self.codec.state_dict().items()}
        rng = rng_state(self.workers.device)
        batch = self.sampler.batch(0, self.workers.rank, self.cfg.data.batch_size)
        with torch.no_grad():
            self.codec.train()
            self.codec.quantize(batch.to(self.workers.device))
        path = self.codec.export(folder)
        self.codec.load_state_dict(snapshot)
        set_rng_state(rng, self.workers.device)
        return path

    # -- one step ------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimisation step of the discriminators and the codec; returns mean losses."""
        cfg, w = self.cfg, self.cfg.loss
        real = self.sampler.batch(self.step, self.workers.rank, cfg.data.batch_size)
        real = real.to(self.workers.device)
        b = real.shape[0]
        out = self.g_model(real)
        fake = out.wav[..., : real.shape[-1]]
        use_gan = self.step >= w.disc_start
        d_loss = real.new_zeros(())
        if use_gan:
            self.opt_d.zero_grad(set_to_none=True)
            judged = self.d_model(torch.cat((real, fake.detach())))
            d_loss = discriminator_loss(
                [x[:b] for x in judged.logits], [x[b:] for x in judged.logits]
            )
            d_loss.backward()
            nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.optim.grad_clip)
            self.opt_d.step()
            self.sched_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        mel = self.mel_loss(fake, real)
        adv = fm = real.new_zeros(())
        if use_gan:
            # The unwrapped discriminators, frozen: this pass trains the codec only.
            self.disc.requires_grad_(False)
            judged = self.disc(torch.cat((real, fake)))
            adv = generator_loss([x[b:] for x in judged.logits])
            fm = feature_matching_loss(
                [[f[:b] for f in feats] for feats in judged.features],
                [[f[b:] for f in feats] for feats in judged.features],
            )
            self.disc.requires_grad_(True)
        heard = real.new_zeros(())
        if self.recognizer is not None:
            heard = self.recognizer(fake, real)
        aux = real.new_zeros(())
        if self.h_model is not None:
            aux = self.h_model(out.latent, real)
        total = (
            w.mel * mel
            + w.latent_mel * aux
            + w.commitment * out.commitment
            + w.adversarial * adv
            + w.feature_matching * fm
            + w.recognizer * heard
        )
        total.backward()
        nn.utils.clip_grad_norm_(
            [p for p in self.codec.parameters() if p.requires_grad], cfg.optim.grad_clip
        )
        self.opt_g.step()
        self.sched_g.step()
        self.step += 1
        losses = [total, mel, out.commitment, adv, fm, d_loss, heard, aux]
        losses = torch.stack(losses).detach().float()
        return dict(zip(LOSS_NAMES, self.workers.mean(losses).tolist(), strict=True))

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, steps: int | None = None, resume: bool = True, progress: bool = True) -> Path:
        """Train until ``steps`` (default: the config's), saving every ``save_every`` steps and
        at the end; returns the exported model folder.

        SIGINT (Ctrl-C) or SIGTERM stops the run after the step in progress, with a checkpoint
        of that step, and :attr:`stopped_by` names the signal (None when the run finished);
        calling ``fit`` again (the same command) continues from it.
        """
        self.codec.train()
        self.disc.train()
        validate = self.validate
        with compiled_training(self.cfg.run.compile):
            return fit_steps(
                self,
                self.cfg.run.steps if steps is None else steps,
                save_every=self.cfg.run.save_every,
                log_every=self.cfg.run.log_every,
                resume=resume,
                progress=progress,
                name="train codec",
                validate=None if validate is None else lambda: validate(self.out / "model"),
                postfix=lambda losses: {
                    "mel": f"{losses['mel']:.3f}",
                    "d": f"{losses['discriminator']:.3f}",
                },
            )


def held_out_validation(
    files: list[Path], max_files: int = 8, max_seconds: float = 10.0
) -> Callable[[Path], dict[str, float]]:
    """A validation that reloads the exported model as a :class:`Codec` and measures its mel
    distance on held-out files (``max_files`` spread over the list, ``max_seconds`` each)."""
    from omnispeech.eval import evaluate_codec
    from omnispeech.pipelines import Codec

    files = files[:: max(1, len(files) // max_files)][:max_files]

    def run(folder: Path) -> dict[str, float]:
        # Plain PyTorch ops only. With the Numba kernels, validating once made a run drift by
        # ~1e-7 from one resumed at that step (seen with an earlier decoder initialisation; the
        # cause was not pinned down), which broke exact resumption; the plain ops never did.
        with use_backend("reference"):
            codec = Codec.from_pretrained(folder)
            score = evaluate_codec(codec, files, max_seconds)
        return {"valid_mel_distance": score.mean, "valid_mel_distance_shuffled": score.shuffled}

    return run
