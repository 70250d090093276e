"""Training recipes: a codec of configurable size (sample rate, frame rate, codebooks), and a
speech recogniser of the Qwen3-ASR architecture (:class:`ASRTrainer`), and a text-to-speech
model of the Qwen3-TTS architecture (talker + code predictor, :class:`TTSTrainer`) on codes
cached from any codec folder, and its ECAPA-TDNN speaker encoder (:class:`SpeakerTrainer`).

:class:`CodecTrainer` trains the Qwen3-TTS 12 Hz tokenizer architecture (causal SEANet encoder,
split RVQ, Code2Wav decoder) with a multi-scale mel loss, period and STFT discriminators and
feature matching, on one process or many (``torchrun``), and exports a folder that
``omnispeech.Codec`` loads like the released tokenizer.

The trainers stop on SIGINT (Ctrl-C) or SIGTERM after the step in progress, with a checkpoint
of it (:class:`StopRequest`), and resume from it exactly.
"""

from omnispeech.training.asr_config import (
    ASRDataConfig,
    ASRModelConfig,
    ASROptimConfig,
    ASRRunConfig,
    ASRTrainConfig,
)
from omnispeech.training.asr_model import TrainableASR
from omnispeech.training.asr_trainer import ASRTrainer
from omnispeech.training.augment import AugmentConfig
from omnispeech.training.codec_model import TrainableCodec
from omnispeech.training.config import (
    CodecDataConfig,
    CodecLossConfig,
    CodecModelConfig,
    CodecOptimConfig,
    CodecRunConfig,
    CodecTrainConfig,
)
from omnispeech.training.interrupt import StopRequest
from omnispeech.training.speaker_config import SpeakerTrainConfig
from omnispeech.training.speaker_trainer import SpeakerTrainer
from omnispeech.training.trainer import CodecTrainer
from omnispeech.training.tts_config import TTSDataConfig, TTSModelConfig, TTSTrainConfig
from omnispeech.training.tts_model import TrainableTTS
from omnispeech.training.tts_trainer import TTSTrainer
from omnispeech.training.workers import Workers

__all__ = [
    "ASRDataConfig",
    "ASRModelConfig",
    "ASROptimConfig",
    "ASRRunConfig",
    "ASRTrainConfig",
    "ASRTrainer",
    "AugmentConfig",
    "TrainableASR",
    "CodecDataConfig",
    "CodecLossConfig",
    "CodecModelConfig",
    "CodecOptimConfig",
    "CodecRunConfig",
    "CodecTrainConfig",
    "CodecTrainer",
    "SpeakerTrainConfig",
    "SpeakerTrainer",
    "StopRequest",
    "TrainableCodec",
    "TrainableTTS",
    "TTSDataConfig",
    "TTSModelConfig",
    "TTSTrainConfig",
    "TTSTrainer",
    "Workers",
]
