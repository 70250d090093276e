"""Configuration of a speaker-encoder training run: encoder shape, loss, data, optimisation.

One JSON file with the sections ``model``, ``data``, ``optim`` and ``run`` (each optional;
unknown sections and keys are refused with one line naming them)::

    {
      "model": {"enc_dim": 256, "enc_channels": [128, 128, 128, 128, 384]},
      "data": {"train": "corpus/manifest.jsonl", "batch_size": 32},
      "optim": {"lr": 2e-3, "warmup": 200},
      "run": {"steps": 5000, "save_every": 500}
    }

The model is the ECAPA-TDNN speaker encoder of Qwen3-TTS Base
(:class:`omnispeech.talker.SpeakerEncoder`) at any size, trained to tell the training
manifest's speakers apart with an additive angular margin softmax; its output size
``enc_dim`` must equal the hidden size of the talker that will read its x-vectors.
Relative paths in ``data`` are resolved against the config file's folder.
"""

from __future__ import annotations

import dataclasses

from omnispeech.config import FrozenConfig
from omnispeech.talker import SpeakerEncoderConfig
from omnispeech.training.asr_config import ASROptimConfig, ASRRunConfig
from omnispeech.training.config import SectionedConfig


@dataclasses.dataclass(frozen=True)
class SpeakerModelConfig(FrozenConfig):
    """Shape of the encoder and its training loss (defaults: the bundled small encoder).

    The encoder fields keep the names of the released ``speaker_encoder_config`` (block 0 a
    TDNN on the mel frames, then SE-Res2Net blocks, then the aggregation block that reads them
    side by side, so the last width is the sum of the middle ones); the released encoder is
    ``enc_channels`` (512, 512, 512, 512, 1536), ``enc_attention_channels`` 128,
    ``enc_se_channels`` 128 and ``enc_dim`` 1024 (0.6B) or 2048 (1.7B).
    """

    enc_dim: int = 256  # x-vector size = the talker's hidden size
    enc_channels: tuple[int, ...] = (128, 128, 128, 128, 384)
    enc_kernel_sizes: tuple[int, ...] = (5, 3, 3, 3, 1)
    enc_dilations: tuple[int, ...] = (1, 2, 3, 4, 1)
    enc_attention_channels: int = 64
    enc_res2net_scale: int = 8
    enc_se_channels: int = 64
    # Additive angular margin softmax (ArcFace): the true speaker's logit is
    # scale * cos(theta + margin), so an embedding must sit well inside its speaker's cone,
    # not merely closer to it than to the others; the scale sharpens the softmax over cosines
    # in [-1, 1]. 0.2 and 30 are the usual values for speaker verification.
    margin: float = 0.2
    scale: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 1:
            raise ValueError("model.margin must lie in [0, 1) (radians)")
        if self.scale <= 0:
            raise ValueError("model.scale must be > 0")
        self.encoder_config()  # validates the encoder shape

    def encoder_config(self) -> SpeakerEncoderConfig:
        """The exported encoder's shape (24 kHz, 128 mel bins, as released)."""
        return SpeakerEncoderConfig(
            enc_dim=self.enc_dim,
            enc_channels=self.enc_channels,
            enc_kernel_sizes=self.enc_kernel_sizes,
            enc_dilations=self.enc_dilations,
            enc_attention_channels=self.enc_attention_channels,
            enc_res2net_scale=self.enc_res2net_scale,
            enc_se_channels=self.enc_se_channels,
        )


@dataclasses.dataclass(frozen=True)
class SpeakerDataConfig(FrozenConfig):
    """Where the voices come from, how they are cut and lightly augmented.

    ``train`` / ``valid``: JSONL manifests with ``path`` (or ``paths`` by sample rate; the
    24 kHz copy is read when listed) and ``speaker`` per line, relative to the manifest, e.g.
    the one ``omnispeech data build`` writes. Training learns the speakers of ``train_split``;
    validation scores verification on ``valid_split``, whose speakers a built corpus keeps
    disjoint from the training ones.
    """

    train: str = ""
    valid: str = ""
    train_split: str = "train"
    valid_split: str = "dev"
    # Each batch is cut to one length drawn in this range (seconds): random crops teach the
    # encoder that a voice is the same at any offset and length, as the clones' references are.
    crop_seconds: tuple[float, float] = (2.0, 3.0)
    batch_size: int = 32  # crops per batch and process, speakers drawn uniformly
    valid_utterances: int = 64  # held-out clips embedded at every save
    valid_seconds: float = 4.0  # each held-out clip's middle, at most this long
    # Augmentation, each with its probability: broadband noise at an SNR, a gain. Effects
    # that change the voice itself (speed, pitch) are left out: they would teach the encoder
    # to map different voices to one speaker.
    p_noise: float = 0.3
    snr_db: tuple[float, float] = (5.0, 30.0)
    p_gain: float = 0.5
    gain_db: tuple[float, float] = (-12.0, 6.0)

    def __post_init__(self) -> None:
        lo, hi = self.crop_seconds
        # The encoder's convs need about 0.15 s of frames; its clones are embedded from >= 1 s.
        if not 0.5 <= lo <= hi:
            raise ValueError("data.crop_seconds must be [min, max] with 0.5 <= min <= max")
        if self.batch_size < 2 or self.valid_utterances < 2:
            raise ValueError("data.batch_size and data.valid_utterances must be >= 2")
        if self.valid_seconds < 1:
            raise ValueError("data.valid_seconds must be >= 1 (the encoder's shortest clip)")
        if not (0 <= self.p_noise <= 1 and 0 <= self.p_gain <= 1):
            raise ValueError("data.p_noise and data.p_gain must be probabilities in [0, 1]")


@dataclasses.dataclass(frozen=True)
class SpeakerTrainConfig(SectionedConfig):
    """A whole speaker-encoder training run: one section per concern (``optim`` and ``run``
    as for ASR: AdamW with warm-up and cosine decay; steps, checkpoints, logging, seed)."""

    model: SpeakerModelConfig = SpeakerModelConfig()
    data: SpeakerDataConfig = SpeakerDataConfig()
    optim: ASROptimConfig = ASROptimConfig()
    run: ASRRunConfig = ASRRunConfig()

    _SECTIONS = {
        "model": SpeakerModelConfig,
        "data": SpeakerDataConfig,
        "optim": ASROptimConfig,
        "run": ASRRunConfig,
    }
