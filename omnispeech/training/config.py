"""Configuration of a codec training run: model shape, data, optimisation, losses, schedule.

A run is described by one JSON file with the sections ``model``, ``data``, ``optim``, ``loss``
and ``run`` (each optional; unknown keys are refused)::

    {
      "model": {"sample_rate": 24000, "encoder_ratios": [8, 6, 5, 4], "frame_rate": 12.5,
                "num_codebooks": 16, "codebook_size": 2048},
      "data": {"train": "corpus/train.jsonl", "segment_seconds": 1.0, "batch_size": 8},
      "optim": {"lr": 3e-4},
      "run": {"steps": 20000, "save_every": 1000}
    }

Relative paths in ``data`` are resolved against the config file's folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from omnispeech.config import FrozenConfig
from omnispeech.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class CodecModelConfig(FrozenConfig):
    """Shape of the codec to train (defaults: a small 24 kHz, 12.5 Hz, 8-codebook codec).

    The encoder is the Qwen3-TTS 12 Hz tokenizer's (causal SEANet, causal transformer, stride
    conv, split RVQ), the decoder its Code2Wav, so an exported model loads with
    ``CodecEncoder`` / ``Code2Wav`` / ``Codec`` exactly like the released tokenizer.
    """

    sample_rate: int = 24000
    # SEANet strides, listed decoder-first as in the released config (the encoder applies them
    # reversed); their product is the samples per SEANet frame.
    encoder_ratios: tuple[int, ...] = (8, 6, 5, 4)
    # Code frames per second; sample_rate / prod(encoder_ratios) / frame_rate must be a whole
    # number (the stride of the final downsampling conv).
    frame_rate: float = 12.5
    num_codebooks: int = 8  # 1 semantic + (num_codebooks - 1) acoustic
    codebook_size: int = 1024
    encoder_filters: int = 16  # SEANet's first width; doubles at every stride
    encoder_dim: int = 128  # transformer width and latent width; codebook vectors use half
    encoder_layers: int = 2
    encoder_heads: int = 4
    decoder_hidden: int = 128  # the decoder transformer's width
    decoder_layers: int = 2
    decoder_heads: int = 4
    # Per-head width of the decoder's attention (None: decoder_hidden / decoder_heads; the
    # released decoder uses 16 heads of 64 on a 512-wide stream).
    decoder_head_dim: int | None = None
    decoder_latent: int = 192  # width of the conv trunk around the decoder transformer
    decoder_window: int = 72  # sliding attention window, frames
    # Decoder upsampling: two ConvNeXt-stage ratios, then the SnakeBeta block rates; their
    # product must equal the samples per code frame.
    upsampling_ratios: tuple[int, ...] = (2, 2)
    upsample_rates: tuple[int, ...] = (8, 5, 4, 3)
    decoder_dim: int = 256  # first decoder block's width; halves at every block

    def __post_init__(self) -> None:
        if self.num_codebooks < 2:
            raise ValueError("num_codebooks must be >= 2 (one semantic, at least one acoustic)")
        if self.encoder_dim % 2 or self.encoder_dim % self.encoder_heads:
            raise ValueError("encoder_dim must be even and a multiple of encoder_heads")
        if self.decoder_head_dim is None and self.decoder_hidden % self.decoder_heads:
            raise ValueError("decoder_hidden must be a multiple of decoder_heads")
        stride = self.sample_rate / math.prod(self.encoder_ratios) / self.frame_rate
        if stride != int(stride) or stride < 1:
            raise ValueError(
                f"frame_rate {self.frame_rate} must divide the SEANet rate "
                f"{self.sample_rate / math.prod(self.encoder_ratios)} Hz"
            )
        if math.prod(self.upsampling_ratios) * math.prod(self.upsample_rates) != self.hop_length:
            raise ValueError(
                f"decoder upsampling {self.upsampling_ratios} x {self.upsample_rates} must "
                f"equal the {self.hop_length} samples per code frame"
            )
        if self.decoder_dim % 2 ** len(self.upsample_rates):
            raise ValueError("decoder_dim must halve cleanly through every decoder block")

    @property
    def hop_length(self) -> int:
        """Samples per code frame."""
        return round(self.sample_rate / self.frame_rate)


@dataclasses.dataclass(frozen=True)
class CodecDataConfig(FrozenConfig):
    """Where the audio comes from and how it is cut.

    ``train`` / ``valid``: a folder (every .wav/.flac/.ogg below it) or a JSONL manifest with a
    ``path`` per line (relative to the manifest); files of any rate and channel count. Of a
    manifest with a ``split`` per line (``omnispeech data build``), training reads the lines
    of ``train_split`` and validation those of ``valid_split``, each at the model's sample
    rate when the line lists ``paths`` by rate.

    ``finetune``: an exported codec (``OUT/model`` of an earlier run) whose decoder alone is
    trained on; its encoder and codebooks stay frozen, so codes made with it keep their meaning.

    ``recognizer``: a Qwen3-ASR folder (or ``"bundled"``) whose frozen audio encoder listens to
    the decoded audio when ``loss.recognizer`` > 0 (see :mod:`omnispeech.training.
    recognizer_loss`).
    """

    train: str = ""
    valid: str = ""
    finetune: str = ""
    recognizer: str = ""
    train_split: str = "train"
    valid_split: str = "dev"
    segment_seconds: float = 1.0
    batch_size: int = 8  # per process

    def __post_init__(self) -> None:
        if self.segment_seconds <= 0 or self.batch_size < 1:
            raise ValueError("segment_seconds must be > 0 and batch_size >= 1")


@dataclasses.dataclass(frozen=True)
class CodecOptimConfig(FrozenConfig):
    """AdamW for the codec and the discriminators, exponential learning-rate decay per step."""

    lr: float = 3e-4
    disc_lr: float = 3e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.0
    # Multiplied into both learning rates after every step. A resume takes it from its own
    # config, so resuming with a smaller value cools a run down from where it stands.
    lr_decay: float = 0.99999
    grad_clip: float = 1000.0  # max gradient norm (large: a guard against blow-ups only)


@dataclasses.dataclass(frozen=True)
class CodecLossConfig(FrozenConfig):
    """Loss weights and the settings of the spectral loss and the discriminators."""

    mel: float = 15.0
    adversarial: float = 1.0
    feature_matching: float = 2.0
    commitment: float = 1.0
    # Distance of a recogniser's audio tokens (data.recognizer names it); 0 = not used.
    recognizer: float = 0.0
    # Log-mel predicted from the latent by a training-only head (training.latent_mel); 0 = off.
    latent_mel: float = 0.0
    # Multi-scale log-mel L1: one STFT per window length (hop = window / 4).
    mel_windows: tuple[int, ...] = (256, 512, 1024, 2048)
    mel_bins: tuple[int, ...] = (20, 40, 80, 160)
    # Steps trained on the spectral loss alone before the discriminators join in.
    disc_start: int = 0
    mpd_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    stft_windows: tuple[int, ...] = (2048, 1024, 512)
    disc_channels: int = 32  # width of the discriminators' first layer

    def __post_init__(self) -> None:
        if len(self.mel_windows) != len(self.mel_bins):
            raise ValueError("mel_windows and mel_bins need one entry per scale")


@dataclasses.dataclass(frozen=True)
class CodecRunConfig(FrozenConfig):
    """Length of the run, checkpoints, logging, seed."""

    steps: int = 10000
    save_every: int = 1000
    log_every: int = 10
    seed: int = 0
    # Quantizer: EMA decay of the codebooks, k-means initialisation on the first batch (0:
    # random vectors), dropout of the later acoustic codebooks (each step keeps a random
    # number of them).
    ema_decay: float = 0.99
    # Measured on the CPU demo (8 x 0.64 s batches, 256 entries): k-means on the first batch
    # of an untrained encoder collapsed the codes (the decoder then ignored them), random
    # initialisation did not.
    kmeans_iters: int = 0
    quantizer_dropout: bool = True
    # Entries whose EMA usage falls below this are re-drawn from the batch. Measured on the
    # CPU demo: 2.0 re-drew so many entries each step that the codes carried nothing, 0.5
    # kept them informative.
    dead_code_threshold: float = 0.5
    # Fuse the decoder's SnakeBeta activations (forward and backward) with torch.compile:
    # 4x faster than eager on 2 CPU cores, 10 % of a bundled25.json step, after about 30 s
    # of compiling (omnispeech.kernels.compiled). Worth it for long runs, not short ones.
    compile: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1 or self.save_every < 1 or self.log_every < 1:
            raise ValueError("steps, save_every and log_every must be >= 1")


class SectionedConfig:
    """A training run read from one JSON object of named sections (``_SECTIONS``: name ->
    :class:`FrozenConfig` class); subclasses are frozen dataclasses with one field per
    section. Unknown sections or keys are refused; ``data.train`` / ``data.valid`` paths are
    resolved against the config file's folder."""

    _SECTIONS: dict[str, type[FrozenConfig]] = {}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """From a dict of sections; unknown sections or keys raise :class:`ConfigError`."""
        unknown = sorted(set(data) - set(cls._SECTIONS))
        if unknown:
            raise ConfigError(f"unknown config sections {unknown}; known: {sorted(cls._SECTIONS)}")
        parts = {}
        for name, section in cls._SECTIONS.items():
            value = data.get(name, {})
            if not isinstance(value, dict):
                raise ConfigError(f"config section {name!r} must be an object")
            parts[name] = section.from_dict(value)
        return cls(**parts)

    @classmethod
    def from_file(cls, path: str | Path) -> Any:
        """Read a JSON config; relative data paths become relative to the file's folder.

        Raises:
            ConfigError: unreadable file, invalid JSON, unknown keys or bad values.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the config must be a JSON object")
        cfg = cls.from_dict(data)
        base = path.resolve().parent
        section = cfg.data  # type: ignore[attr-defined]
        keys = [k for k in ("train", "valid", "finetune", "recognizer") if hasattr(section, k)]
        # "bundled" names the recogniser shipped in the package, not a folder beside the file.
        fix = {k: str(base / v) for k in keys if (v := getattr(section, k)) and v != "bundled"}
        return cfg.replace(data=section.replace(**fix)) if fix else cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every section, the inverse of :meth:`from_dict`."""
        return {name: getattr(self, name).to_dict() for name in self._SECTIONS}

    def replace(self, **changes: Any) -> Any:
        """A copy with some sections replaced."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclasses.dataclass(frozen=True)
class CodecTrainConfig(SectionedConfig):
    """A whole training run: one section per concern."""

    model: CodecModelConfig = CodecModelConfig()
    data: CodecDataConfig = CodecDataConfig()
    optim: CodecOptimConfig = CodecOptimConfig()
    loss: CodecLossConfig = CodecLossConfig()
    run: CodecRunConfig = CodecRunConfig()

    _SECTIONS = {
        "model": CodecModelConfig,
        "data": CodecDataConfig,
        "optim": CodecOptimConfig,
        "loss": CodecLossConfig,
        "run": CodecRunConfig,
    }
