"""Audio input for omnispeech: files and arrays -> 16 kHz mono float32 -> 128-bin log-mel.

* :mod:`omnispeech.audio.io`: :func:`load_audio`, :func:`prepare_audio`,
  :func:`iter_audio_blocks`, :func:`iter_quiet_segments`, :func:`audio_duration`,
  :func:`save_audio`, :func:`change_speed`.
* :mod:`omnispeech.audio.features`: the Whisper-style log-mel of Qwen3-Omni / Qwen3-ASR,
  offline (:func:`log_mel_spectrogram`, :func:`batch_log_mel`) and streaming
  (:class:`StreamingLogMel`).
* :mod:`omnispeech.audio.spectral`: multi-scale log-mel distance (:class:`MultiScaleMelLoss`,
  :func:`mel_distance`), a training loss and a measure of reconstruction quality.
"""

from omnispeech.audio.features import (
    HOP_LENGTH,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    StreamingLogMel,
    batch_log_mel,
    feature_lengths,
    log_mel_spectrogram,
    mel_filter_bank,
    slaney_mel_filters,
)
from omnispeech.audio.io import (
    audio_duration,
    change_speed,
    iter_audio_blocks,
    iter_quiet_segments,
    load_audio,
    prepare_audio,
    save_audio,
)
from omnispeech.audio.spectral import MelSpectrogram, MultiScaleMelLoss, mel_distance

__all__ = [
    "HOP_LENGTH",
    "N_FFT",
    "N_MELS",
    "SAMPLE_RATE",
    "MelSpectrogram",
    "MultiScaleMelLoss",
    "StreamingLogMel",
    "audio_duration",
    "batch_log_mel",
    "change_speed",
    "feature_lengths",
    "iter_audio_blocks",
    "iter_quiet_segments",
    "load_audio",
    "log_mel_spectrogram",
    "mel_distance",
    "mel_filter_bank",
    "slaney_mel_filters",
    "prepare_audio",
    "save_audio",
]
