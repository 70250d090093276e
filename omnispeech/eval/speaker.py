"""Speaker similarity: cosine similarity of speaker embeddings.

:class:`SpeakerEncoder` is the interface (audio -> unit-norm embedding); any encoder that
implements it can score voices, e.g. the Qwen3-TTS speaker encoder once omnispeech loads it.

:class:`GE2ESpeakerEncoder` is the one available offline today: the pretrained GE2E d-vector
network (3-layer LSTM over 40-bin mel frames, 256-dim embedding; Wan et al. 2018) whose weights
ship inside the ``resemblyzer`` wheel (Apache-2.0, ``pip install 'omnispeech[eval]'``). Only
its weights file is read: the network and its front end are re-implemented here with torch
and numpy, so neither librosa nor webrtcvad (resemblyzer's own dependencies, the latter
unimportable on recent setuptools) is imported. The one departure from resemblyzer: long
silences are trimmed with an energy detector instead of webrtcvad. Checked against
resemblyzer 0.1.4 with librosa 0.11: the mel frames agree to 3e-6 and the embeddings of the same
trimmed audio to a cosine of 1.0; end to end (different trimming) 0.98-1.0 on espeak-ng speech.

Reference points for GE2E on synthetic voices: the same voice on different text scores about
0.9-0.99, different voices about 0.4-0.85.
"""

from __future__ import annotations

import abc
import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn

from omnispeech.audio import load_audio, prepare_audio, slaney_mel_filters
from omnispeech.errors import CheckpointError, DependencyError, EmptyAudioError


class SpeakerEncoder(abc.ABC):
    """Audio -> speaker embedding.

    Attributes:
        sample_rate: Hz of the audio :meth:`embed` takes.
        embedding_size: length of the embedding.
    """

    sample_rate: int
    embedding_size: int

    @abc.abstractmethod
    def embed(self, wav: np.ndarray) -> np.ndarray:
        """The speaker embedding of one utterance.

        Args:
            wav: ``[S]`` float32 mono at :attr:`sample_rate` Hz.

        Returns:
            ``[embedding_size]`` float32 with unit L2 norm.
        """

    def embed_audio(
        self, audio: str | Path | np.ndarray, sample_rate: int | None = None
    ) -> np.ndarray:
        """:meth:`embed` of a file (any rate, downmixed) or of samples at ``sample_rate`` Hz."""
        if isinstance(audio, str | Path):
            wav = load_audio(audio, self.sample_rate)
        else:
            wav = prepare_audio(audio, sample_rate or self.sample_rate, self.sample_rate)
        return self.embed(wav)

    def similarity(
        self,
        a: str | Path | np.ndarray,
        b: str | Path | np.ndarray,
        sample_rate: int | None = None,
    ) -> float:
        """Cosine similarity of the speakers of ``a`` and ``b`` (files or samples).

        Args:
            a, b: audio files, or ``[S]`` samples at ``sample_rate`` Hz.
            sample_rate: rate of in-memory samples (default: :attr:`sample_rate`).

        Returns:
            Cosine similarity in [-1, 1] (1 = the same voice).
        """
        return cosine_similarity(self.embed_audio(a, sample_rate), self.embed_audio(b, sample_rate))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two ``[D]`` embeddings."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else 0.0


# GE2E / resemblyzer front end: 16 kHz, 25 ms windows, 10 ms hop, 40 mel bins (power, not log).
_RATE = 16_000
_N_FFT = 400
_HOP = 160
_N_MELS = 40
# Each partial utterance is 160 frames (1.6 s); partials start 1/1.3 s apart, and a last partial
# is kept only if audio covers 75% of it.
_PARTIAL_FRAMES = 160
_PARTIAL_RATE = 1.3
_MIN_COVERAGE = 0.75
# Quiet recordings are raised (never lowered) to -30 dBFS, as in training.
_TARGET_DBFS = -30.0
# Silence trimming: 30 ms windows, a moving average of 8 windows, gaps kept up to 6 windows.
_VAD_WINDOW = 480
_VAD_SMOOTH = 8
_VAD_MAX_SILENCE = 6
# A window is voiced when its level is within 40 dB of the loudest window.
_VAD_RANGE_DB = 40.0


class _GE2ENetwork(nn.Module):
    """``mels [B, 160, 40]`` -> unit-norm ``[B, 256]``: LSTM, last hidden state, linear, ReLU."""

    def __init__(self, n_mels: int = _N_MELS, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_mels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, hidden)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _resemblyzer_weights() -> Path:
    """The ``pretrained.pt`` inside the installed resemblyzer wheel (found without importing)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("resemblyzer")
    except metadata.PackageNotFoundError:
        raise DependencyError(
            "speaker similarity needs the GE2E weights of resemblyzer: "
            "pip install 'omnispeech[eval]'"
        ) from None
    path = Path(str(dist.locate_file("resemblyzer/pretrained.pt")))
    if not path.is_file():
        raise DependencyError(f"resemblyzer is installed but has no weights file at {path}")
    return path


class GE2ESpeakerEncoder(SpeakerEncoder):
    """The pretrained GE2E speaker encoder of resemblyzer (256-dim d-vectors at 16 kHz).

    Args:
        network: the loaded network (use :meth:`from_pretrained`).
    """

    sample_rate = _RATE
    embedding_size = 256

    def __init__(self, network: nn.Module) -> None:
        self.network = network.eval()
        filters = slaney_mel_filters(_N_MELS, _N_FFT, _RATE)
        self._filters = torch.from_numpy(np.array(filters, dtype=np.float32))
        self._window = torch.hann_window(_N_FFT)

    @classmethod
    def from_pretrained(cls, weights: str | Path | None = None) -> GE2ESpeakerEncoder:
        """Load the network.

        Args:
            weights: a resemblyzer-format ``.pt`` file; None: the one in the resemblyzer wheel.

        Raises:
            DependencyError: resemblyzer is not installed (and no file was given).
            CheckpointError: the file does not hold the GE2E network.
        """
        path = Path(weights) if weights is not None else _resemblyzer_weights()
        try:
            # A legacy pickle file: weights_only refuses anything but tensors and plain data.
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            state = checkpoint["model_state"]
        except (OSError, RuntimeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: not a GE2E speaker encoder checkpoint: {exc}") from None
        network = _GE2ENetwork()
        # The file also holds GE2E's training-only similarity scale and bias.
        state = {k: v for k, v in state.items() if not k.startswith("similarity_")}
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: not a GE2E speaker encoder checkpoint: {exc}") from None
        return cls(network)

    def _mels(self, wav: np.ndarray) -> torch.Tensor:
        """``[S]`` -> ``[frames, 40]`` mel power (librosa's centred, zero-padded STFT)."""
        spec = torch.stft(
            torch.from_numpy(wav),
            _N_FFT,
            _HOP,
            window=self._window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        return (self._filters @ spec.abs().square()).T

    @torch.inference_mode()
    def embed(self, wav: np.ndarray) -> np.ndarray:
        """See :meth:`SpeakerEncoder.embed`; utterances are embedded as the normalised mean of
        1.6 s partials (shorter audio is zero-padded to one partial).

        Raises:
            EmptyAudioError: silent audio.
        """
        wav = _trim_silences(_raise_volume(np.asarray(wav, dtype=np.float32)))
        starts = _partial_starts(wav.shape[0])
        need = (starts[-1] + _PARTIAL_FRAMES) * _HOP
        if need > wav.shape[0]:
            wav = np.pad(wav, (0, need - wav.shape[0]))
        mels = self._mels(wav)
        batch = torch.stack([mels[s : s + _PARTIAL_FRAMES] for s in starts])
        weight = next(self.network.parameters())
        partials = self.network(batch.to(weight.device, weight.dtype)).float().cpu()
        mean = partials.mean(0)
        return (mean / mean.norm().clamp_min(1e-12)).numpy()


def _partial_starts(samples: int) -> list[int]:
    """First frame of each 160-frame partial covering ``samples`` (resemblyzer's slicing)."""
    frames = int(np.ceil((samples + 1) / _HOP))
    step = round(_RATE / _PARTIAL_RATE / _HOP)
    starts = list(range(0, max(1, frames - _PARTIAL_FRAMES + step + 1), step))
    coverage = (samples - starts[-1] * _HOP) / (_PARTIAL_FRAMES * _HOP)
    if coverage < _MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


def _raise_volume(wav: np.ndarray) -> np.ndarray:
    """Scale quiet audio up to -30 dBFS RMS (louder audio is left alone)."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
    if rms == 0:
        raise EmptyAudioError("the audio is silent; it has no speaker to embed")
    gain_db = _TARGET_DBFS - 20 * np.log10(rms)
    return wav * np.float32(10 ** (gain_db / 20)) if gain_db > 0 else wav


def _trim_silences(wav: np.ndarray) -> np.ndarray:
    """Drop silences longer than ~0.2 s, keeping short pauses (the voiced windows, smoothed
    and widened as resemblyzer does with webrtcvad's decisions)."""
    windows = wav.shape[0] // _VAD_WINDOW
    if windows < _VAD_SMOOTH:
        return wav
    frames = wav[: windows * _VAD_WINDOW].reshape(windows, _VAD_WINDOW).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    voiced = (level > level.max() - _VAD_RANGE_DB).astype(np.float64)
    smooth = np.convolve(voiced, np.ones(_VAD_SMOOTH) / _VAD_SMOOTH, mode="same") >= 0.5
    # Widen each voiced run by half the longest pause kept on each side (resemblyzer's binary
    # dilation), so pauses of up to 6 windows inside speech are bridged.
    widened = np.convolve(smooth, np.ones(_VAD_MAX_SILENCE + 1), mode="same") > 0
    mask = np.repeat(widened, _VAD_WINDOW)
    kept = wav[: mask.shape[0]][mask]
    return kept if kept.shape[0] else wav


@functools.lru_cache(maxsize=1)
def default_speaker_encoder() -> SpeakerEncoder:
    """The speaker encoder used when none is given: GE2E from resemblyzer's weights (cached).

    Raises:
        DependencyError: resemblyzer is not installed.
    """
    return GE2ESpeakerEncoder.from_pretrained()


def speaker_similarity(
    a: str | Path | np.ndarray,
    b: str | Path | np.ndarray,
    sample_rate: int | None = None,
    encoder: SpeakerEncoder | None = None,
) -> float:
    """Cosine similarity of the voices in ``a`` and ``b`` (1 = the same voice).

    Args:
        a, b: audio files, or ``[S]`` samples at ``sample_rate`` Hz.
        sample_rate: rate of in-memory samples (default: the encoder's).
        encoder: the speaker encoder (default: :func:`default_speaker_encoder`).
    """
    encoder = encoder or default_speaker_encoder()
    return encoder.similarity(a, b, sample_rate)
