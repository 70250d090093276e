"""Configuration of an ASR training run: model shape, data, augmentation, optimisation, schedule.

One JSON file with the sections ``model``, ``data``, ``augment``, ``optim`` and ``run`` (each
optional; unknown keys are refused)::

    {
      "model": {"vocab_size": 4096, "encoder_dim": 256, "encoder_layers": 6,
                "decoder_dim": 256, "decoder_layers": 4},
      "data": {"train": "corpus/manifest.jsonl", "batch_seconds": 120},
      "optim": {"lr": 1e-3, "warmup": 500},
      "run": {"steps": 20000, "save_every": 500}
    }

The model is the Qwen3-ASR architecture (AuT encoder with its projector, Qwen3 decoder) at any
size, plus a CTC head on the encoder's output that gives word timestamps and forced alignment.
Relative paths in ``data`` are resolved against the config file's folder.
"""

from __future__ import annotations

import dataclasses

from omnispeech.config import FrozenConfig
from omnispeech.core import DecoderConfig
from omnispeech.encoder.config import EncoderConfig
from omnispeech.training.augment import AugmentConfig
from omnispeech.training.config import SectionedConfig


@dataclasses.dataclass(frozen=True)
class ASRModelConfig(FrozenConfig):
    """Shape of the recogniser (defaults: the bundled small model).

    The encoder keeps the released front end (128 log-mel bins, 1-s chunks, 8x downsampling to
    13 tokens per second, 8-s attention windows) so that the pipeline, streaming included,
    runs it unchanged; only widths and depths shrink.
    """

    vocab_size: int = 4096  # byte-level BPE entries plus the prompt's special tokens
    encoder_dim: int = 256
    encoder_layers: int = 6
    encoder_heads: int = 4
    encoder_ffn: int = 1024
    conv_channels: int = 128  # the conv stem's width (released: 480)
    decoder_dim: int = 256
    decoder_layers: int = 4
    decoder_heads: int = 4
    decoder_kv_heads: int = 2
    decoder_head_dim: int = 64
    decoder_ffn: int = 768
    # Weight of the CTC loss on the encoder (the attention decoder's loss has weight 1): it
    # speeds up learning the alignment and trains the head used for timestamps.
    ctc_weight: float = 0.3
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ValueError("vocab_size must be >= 300 (256 bytes, merges, special tokens)")
        if not 0 <= self.ctc_weight:
            raise ValueError("ctc_weight must be >= 0")

    def encoder_config(self) -> EncoderConfig:
        """The AuT shape, projecting into the decoder's width."""
        return EncoderConfig(
            num_mel_bins=128,
            d_model=self.encoder_dim,
            encoder_layers=self.encoder_layers,
            encoder_attention_heads=self.encoder_heads,
            encoder_ffn_dim=self.encoder_ffn,
            output_dim=self.decoder_dim,
            downsample_hidden_size=self.conv_channels,
        )

    def decoder_config(self) -> DecoderConfig:
        """The Qwen3 decoder shape (tied embeddings: the small vocabulary keeps it cheap)."""
        return DecoderConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.decoder_dim,
            intermediate_size=self.decoder_ffn,
            num_layers=self.decoder_layers,
            num_heads=self.decoder_heads,
            num_kv_heads=self.decoder_kv_heads,
            head_dim=self.decoder_head_dim,
            rope_theta=10_000.0,
            max_positions=4096,
            tie_word_embeddings=True,
        )


@dataclasses.dataclass(frozen=True)
class ASRDataConfig(FrozenConfig):
    """Where the transcribed audio comes from and how batches are made.

    ``train`` / ``valid``: JSONL manifests (``path``, ``text``, ``language``, optional
    ``split`` and ``duration``; paths relative to the manifest), e.g. the one
    ``omnispeech data build`` writes. ``train_split`` / ``valid_split`` select lines by their
    ``split`` field (empty: every line).
    """

    train: str = ""
    valid: str = ""
    train_split: str = "train"
    valid_split: str = "dev"
    languages: tuple[str, ...] = ()  # empty: every language of the training manifest
    batch_seconds: float = 120.0  # audio per batch and process
    max_batch: int = 48  # utterances per batch at most
    max_seconds: float = 20.0  # longer utterances are skipped (and counted)
    valid_utterances: int = 96  # held-out utterances decoded at every save
    tokenizer_vocab: str = ""  # an existing tokenizer.json to use instead of training one

    def __post_init__(self) -> None:
        if self.batch_seconds <= 0 or self.max_batch < 1 or self.max_seconds <= 0:
            raise ValueError("batch_seconds, max_batch and max_seconds must be positive")


@dataclasses.dataclass(frozen=True)
class ASROptimConfig(FrozenConfig):
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio * lr`` at ``run.steps``."""

    lr: float = 1e-3
    warmup: int = 500
    min_lr_ratio: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    grad_clip: float = 1.0


@dataclasses.dataclass(frozen=True)
class ASRRunConfig(FrozenConfig):
    """Length of the run, checkpoints, logging, seed."""

    steps: int = 20000
    save_every: int = 500
    log_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.save_every < 1 or self.log_every < 1:
            raise ValueError("steps, save_every and log_every must be >= 1")


@dataclasses.dataclass(frozen=True)
class ASRTrainConfig(SectionedConfig):
    """A whole ASR training run: one section per concern."""

    model: ASRModelConfig = ASRModelConfig()
    data: ASRDataConfig = ASRDataConfig()
    augment: AugmentConfig = AugmentConfig()
    optim: ASROptimConfig = ASROptimConfig()
    run: ASRRunConfig = ASRRunConfig()

    _SECTIONS = {
        "model": ASRModelConfig,
        "data": ASRDataConfig,
        "augment": AugmentConfig,
        "optim": ASROptimConfig,
        "run": ASRRunConfig,
    }
