"""The Qwen3-TTS speaker encoder: reference audio -> x-vector for voice cloning.

Qwen3-TTS Base models carry an ECAPA-TDNN speaker encoder, trained jointly with the talker. Its
output (``enc_dim`` = the talker's hidden size: 1024 for 0.6B, 2048 for 1.7B) goes straight into
the talker's speaker slot, with no projection. The released code calls it once per reference
clip, as a batch of one, after resampling the clip to 24 kHz (librosa's soxr "HQ", the
resampler :mod:`omnispeech.audio.io` uses too).

Front end (:func:`speaker_log_mel`, the reference's ``mel_spectrogram`` with the arguments of
``extract_speaker_embedding``): 24 kHz audio, reflect padded by (1024 - 256) / 2 = 384 samples
each side, STFT with a periodic 1024-sample Hann window and hop 256, no centring, magnitude
``sqrt(re^2 + im^2 + 1e-9)``, 128 Slaney mel filters over 0-12 kHz, natural log of
``max(mel, 1e-5)``. ``S`` samples make ``S // 256`` frames (93.75 frames/s).

Checkpoints: a Qwen3-TTS Base folder (``config.json`` with ``speaker_encoder_config``, tensors
``speaker_encoder.*``) loads unchanged; :meth:`SpeakerEncoder.save_pretrained` writes the same
layout.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.audio import load_audio, prepare_audio, slaney_mel_filters
from omnispeech.checkpoint import CheckpointFolder, load_module, resolve_folder, save_folder
from omnispeech.config import FrozenConfig
from omnispeech.errors import CheckpointError, EmptyAudioError, InputError, InvalidAudioError
from omnispeech.talker.ecapa import AttentiveStatsPool, SERes2NetBlock, TdnnBlock

SAMPLE_RATE = 24000  # Hz; the speaker encoder, like the codec, runs at 24 kHz.
N_FFT = 1024  # 42.7 ms window at 24 kHz -> 513 frequency bins.
HOP_LENGTH = 256  # 10.7 ms at 24 kHz -> 93.75 frames/s.
N_MELS = 128  # extract_speaker_embedding's num_mels; the encoder's mel_dim must equal it.
F_MAX = 12000.0  # Hz: the filters span 0 Hz to the Nyquist frequency of 24 kHz audio.
_PAD = (N_FFT - HOP_LENGTH) // 2  # 384: with center=False, frame i starts at sample 256 i - 384.
_MAGNITUDE_EPS = 1e-9  # inside the square root: silent bins get 3.2e-5, never 0.
_LOG_FLOOR = 1e-5  # mel magnitude floor before the log: silence maps to ln(1e-5) = -11.5.

# Shortest reference clip accepted by `embed`, in seconds. The reference code sets none (the
# network runs from 1280 samples up), but the pooled mean and std of under ~94 frames describe
# a syllable or two, not a voice; Qwen3-TTS advertises 3 s clones and users report 5-15 s as
# the best length. One second still admits short clips while refusing mistakes (a cut file).
MIN_SECONDS = 1.0
# A clip whose loudest sample is under -80 dBFS (about 3 LSB of 16-bit PCM) holds no voice: its
# mel frames sit at the front end's noise floor and the embedding would be arbitrary.
SILENCE_PEAK = 1e-4

# Keys that transformers' PretrainedConfig.to_dict adds to a sub-config; not encoder fields.
_HF_BOOKKEEPING = ("model_type", "transformers_version")


@dataclasses.dataclass(frozen=True)
class SpeakerEncoderConfig(FrozenConfig):
    """Shape of the ECAPA-TDNN speaker encoder (field names and defaults of the release).

    Block ``0`` is a TDNN on the mel frames, blocks ``1 .. n-2`` are SE-Res2Net blocks, and
    block ``n-1`` (the "multi-layer feature aggregation") reads the concatenated outputs of
    blocks ``1 .. n-2``.
    """

    mel_dim: int = N_MELS  # mel bins per input frame
    enc_dim: int = 1024  # output size = the talker's hidden size (1024 0.6B, 2048 1.7B)
    enc_channels: tuple[int, ...] = (512, 512, 512, 512, 1536)  # output channels per block
    enc_kernel_sizes: tuple[int, ...] = (5, 3, 3, 3, 1)  # conv taps per block
    enc_dilations: tuple[int, ...] = (1, 2, 3, 4, 1)  # frames between taps per block
    enc_attention_channels: int = 128  # hidden channels of the attentive pooling
    enc_res2net_scale: int = 8  # channel groups in each Res2Net conv
    enc_se_channels: int = 128  # bottleneck of each squeeze-excite
    sample_rate: int = SAMPLE_RATE  # Hz of the audio the front end takes

    def __post_init__(self) -> None:
        ints = (self.mel_dim, self.enc_dim, self.enc_attention_channels, self.enc_se_channels)
        if min(ints) < 1 or self.enc_res2net_scale < 1:
            raise ValueError("sizes must be positive")
        channels = self.enc_channels
        n = len(channels)
        if n < 3 or not n == len(self.enc_kernel_sizes) == len(self.enc_dilations):
            raise ValueError(
                "enc_channels, enc_kernel_sizes and enc_dilations need one entry per block "
                "(at least 3: input TDNN, SE-Res2Net blocks, aggregation)"
            )
        if min(channels) < 1 or min(self.enc_kernel_sizes) < 1 or min(self.enc_dilations) < 1:
            raise ValueError("channels, kernel sizes and dilations must be positive")
        # SE-Res2Net blocks are residual: their input and output widths must agree.
        if len(set(channels[:-1])) != 1:
            raise ValueError(f"enc_channels[:-1] must be equal, got {list(channels[:-1])}")
        if channels[0] % self.enc_res2net_scale:
            raise ValueError("enc_channels must be a multiple of enc_res2net_scale")
        # The aggregation block reads the SE-Res2Net outputs side by side.
        if sum(channels[1:-1]) != channels[-1]:
            raise ValueError("enc_channels[-1] must equal the sum of enc_channels[1:-1]")
        if self.sample_rate != SAMPLE_RATE or self.mel_dim != N_MELS:
            # The front end's constants are those of the release (24 kHz, 128 bins).
            raise ValueError(f"sample_rate must be {SAMPLE_RATE} and mel_dim {N_MELS}")

    @classmethod
    def from_released(cls, data: dict[str, Any]) -> SpeakerEncoderConfig:
        """The config from a Qwen3-TTS ``config.json``'s ``speaker_encoder_config`` dict.

        Released Base configs set only ``enc_dim`` and ``sample_rate``; the other fields take
        the defaults above, as in the reference. Unknown keys raise :class:`ConfigError`.
        """
        return cls.from_dict({k: v for k, v in data.items() if k not in _HF_BOOKKEEPING})


@functools.lru_cache(maxsize=8)
def _front_end_constants(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 mel filters ``[128, 513]``, periodic Hann window ``[1024]``) on ``device``."""
    filters = np.array(slaney_mel_filters(N_MELS, N_FFT, SAMPLE_RATE, F_MAX))
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float32, device=device)
    return torch.from_numpy(filters).to(device, torch.float32), window


def speaker_log_mel(wav: torch.Tensor) -> torch.Tensor:
    """The speaker encoder's log-mel features of 24 kHz audio (see the module docstring).

    Args:
        wav: ``[B, S]`` float samples at 24 kHz, ``S > 384``; computed in float32.

    Returns:
        ``[B, S // 256, 128]`` float32 natural-log mel magnitudes, frames first.
    """
    if wav.ndim != 2 or wav.shape[1] <= _PAD:
        raise InputError(f"audio must be [B, S] with S > {_PAD} samples, got {tuple(wav.shape)}")
    filters, window = _front_end_constants(str(wav.device))
    x = F.pad(wav.float().unsqueeze(1), (_PAD, _PAD), mode="reflect").squeeze(1)
    spec = torch.stft(x, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)
    # Sum of squares of the real and imaginary parts (not abs()): same rounding as the reference.
    magnitude = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + _MAGNITUDE_EPS)
    mel = torch.matmul(filters, magnitude)  # [B, 128, T]
    return torch.log(mel.clamp(min=_LOG_FLOOR)).transpose(1, 2)


class SpeakerEncoder(nn.Module):
    """ECAPA-TDNN speaker encoder of Qwen3-TTS Base: mel frames or audio -> x-vector.

    ``forward(mels)`` is the network alone; :meth:`embed` takes 24 kHz waveforms and
    :meth:`embed_audio` files or arrays at any rate. Parameter names are those of the released
    state dict without its ``speaker_encoder.`` prefix.

    Args:
        cfg: the encoder shape.
    """

    def __init__(self, cfg: SpeakerEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        channels, kernels, dilations = cfg.enc_channels, cfg.enc_kernel_sizes, cfg.enc_dilations
        blocks: list[nn.Module] = [TdnnBlock(cfg.mel_dim, channels[0], kernels[0], dilations[0])]
        for i in range(1, len(channels) - 1):
            blocks.append(
                SERes2NetBlock(
                    channels[i],
                    cfg.enc_res2net_scale,
                    cfg.enc_se_channels,
                    kernels[i],
                    dilations[i],
                )
            )
        self.blocks = nn.ModuleList(blocks)
        self.mfa = TdnnBlock(channels[-1], channels[-1], kernels[-1], dilations[-1])
        self.asp = AttentiveStatsPool(channels[-1], cfg.enc_attention_channels)
        # A 1x1 conv (not a Linear) so that the weight keeps the released shape [D, 2 C, 1].
        self.fc = nn.Conv1d(2 * channels[-1], cfg.enc_dim, 1)
        # Reflect padding needs more frames than the widest pad of any conv.
        self.min_frames = 1 + max(
            d * (k - 1) - d * (k - 1) // 2 for k, d in zip(kernels, dilations, strict=True)
        )

    @property
    def sample_rate(self) -> int:
        """Audio samples per second that :meth:`embed` takes (24000)."""
        return self.cfg.sample_rate

    @property
    def embedding_size(self) -> int:
        """Length of an embedding (``enc_dim``)."""
        return self.cfg.enc_dim

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """Speaker embeddings of mel frames.

        Args:
            mels: ``[B, T, mel_dim]`` log-mel frames (:func:`speaker_log_mel`) in the model's
                dtype; every item has all ``T`` frames (no padding mask).

        Returns:
            ``[B, enc_dim]`` embeddings (not normalised: the talker takes them as they are).
        """
        if mels.ndim != 3 or mels.shape[2] != self.cfg.mel_dim or mels.shape[1] < self.min_frames:
            raise InputError(
                f"mels must be [B, T, {self.cfg.mel_dim}] with T >= {self.min_frames}, got "
                f"{tuple(mels.shape)}"
            )
        x = mels.transpose(1, 2)  # [B, mel_dim, T]: the convs run over time
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        # Multi-layer aggregation: every SE-Res2Net block's output, not only the last one.
        x = self.mfa(torch.cat(outputs[1:], dim=1))
        pooled = self.asp(x).unsqueeze(2)  # [B, 2 C, 1]
        return self.fc(pooled).squeeze(2)

    @torch.no_grad()
    def embed(self, wav: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Speaker embeddings of 24 kHz waveforms.

        The features are computed in float32 on the model's device, then cast to the model's
        dtype (as the reference does).

        Args:
            wav: ``[S]`` or ``[B, S]`` float samples at 24 kHz (clips of one length per batch),
                at least :data:`MIN_SECONDS` long.

        Returns:
            ``[B, enc_dim]`` on the model's device in its dtype (``B = 1`` for ``[S]`` input).

        Raises:
            InvalidAudioError: a wrong shape or dtype, or NaN / Inf samples.
            EmptyAudioError: a clip shorter than :data:`MIN_SECONDS`, or silent (peak under
                :data:`SILENCE_PEAK`).
        """
        x = torch.as_tensor(wav)
        if x.ndim == 1:
            x = x.unsqueeze(0)
        if x.ndim != 2 or not x.is_floating_point():
            raise InvalidAudioError(
                f"audio must be float [S] or [B, S], got {tuple(x.shape)} {x.dtype}"
            )
        if not torch.isfinite(x).all():
            raise InvalidAudioError("audio holds NaN or Inf samples")
        min_samples = round(MIN_SECONDS * self.sample_rate)
        if x.shape[1] < min_samples:
            raise EmptyAudioError(
                f"reference audio too short for a speaker embedding: {x.shape[1]} samples "
                f"({x.shape[1] / self.sample_rate:.2f} s), need at least {MIN_SECONDS} s "
                f"({min_samples} samples at {self.sample_rate} Hz; 3-15 s of clean speech "
                "works best)"
            )
        peaks = x.abs().amax(dim=1)
        silent = [i for i, peak in enumerate(peaks.tolist()) if peak < SILENCE_PEAK]
        if silent:
            where = f" in batch items {silent}" if x.shape[0] > 1 else ""
            raise EmptyAudioError(
                f"reference audio is silent (peak under {SILENCE_PEAK:g}, -80 dBFS){where}; "
                "it has no voice to embed"
            )
        weight = self.fc.weight
        mels = speaker_log_mel(x.to(weight.device))
        return self(mels.to(weight.dtype))

    def embed_audio(
        self, audio: str | Path | np.ndarray | torch.Tensor, sample_rate: int | None = None
    ) -> torch.Tensor:
        """Speaker embedding of one reference clip: a file, or samples at ``sample_rate``.

        Files are read with soundfile; multi-channel audio is downmixed by the channel mean and
        resampled to 24 kHz with soxr "HQ", as the reference prepares reference audio.

        Args:
            audio: a file path, or samples ``[S]`` / ``[C, S]`` / ``[S, C]`` (float, or signed
                integer PCM) at ``sample_rate``.
            sample_rate: rate of in-memory samples in Hz (required for them; ignored for files,
                whose header gives it).

        Returns:
            ``[enc_dim]`` on the model's device in its dtype.

        Raises:
            AudioFileError: a missing or undecodable file.
            InputError: samples without a ``sample_rate``.
            EmptyAudioError, InvalidAudioError: as :meth:`embed` and
                :func:`omnispeech.audio.prepare_audio`.
        """
        if isinstance(audio, str | Path):
            wav = load_audio(audio, self.sample_rate)
        else:
            if sample_rate is None:
                raise InputError("in-memory audio needs its sample_rate (Hz)")
            wav = prepare_audio(audio, sample_rate, self.sample_rate)
        return self.embed(torch.from_numpy(wav))[0]

    # -- checkpoints --------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> SpeakerEncoder:
        """Load from a Qwen3-TTS Base folder (reads ``speaker_encoder.*`` only) or a folder
        written by :meth:`save_pretrained`.

        Args:
            name_or_path: checkpoint folder (or hub name, see
                :func:`omnispeech.checkpoint.resolve_folder`).
            dtype: parameter dtype (the release stores bfloat16; float32 by default).
            device: where the parameters go.

        Raises:
            CheckpointError: a missing folder, a checkpoint without a speaker encoder
                (CustomVoice and VoiceDesign models have none), or mismatched keys.
            ConfigError: invalid ``speaker_encoder_config`` fields.
        """
        folder = CheckpointFolder(resolve_folder(name_or_path))
        released = folder.config.get("speaker_encoder_config")
        model_type = folder.config.get("tts_model_type", "base")
        if not isinstance(released, dict) or model_type != "base":
            raise CheckpointError(
                f"{folder.path}: no speaker encoder here (tts_model_type {model_type!r}); only "
                "Qwen3-TTS Base checkpoints carry one"
            )
        cfg = SpeakerEncoderConfig.from_released(released)
        prefix = "speaker_encoder."
        return load_module(folder, lambda: cls(cfg), prefix, dtype, device, "speaker encoder")

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` (``speaker_encoder_config``) + ``model.safetensors`` with the
        released names under ``speaker_encoder.``."""
        config = {"tts_model_type": "base", "speaker_encoder_config": self.cfg.to_dict()}
        tensors = {f"speaker_encoder.{k}": v for k, v in self.state_dict().items()}
        save_folder(path, config, tensors)
