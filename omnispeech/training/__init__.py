"""Training recipes: a codec of configurable size (sample rate, frame rate, codebooks).

:class:`CodecTrainer` trains the Qwen3-TTS 12 Hz tokenizer architecture (causal SEANet encoder,
split RVQ, Code2Wav decoder) with a multi-scale mel loss, period and STFT discriminators and
feature matching, on one process or many (``torchrun``), and exports a folder that
``omnispeech.Codec`` loads like the released tokenizer.
"""

from omnispeech.training.codec_model import TrainableCodec
from omnispeech.training.config import (
    CodecDataConfig,
    CodecLossConfig,
    CodecModelConfig,
    CodecOptimConfig,
    CodecRunConfig,
    CodecTrainConfig,
)
from omnispeech.training.trainer import CodecTrainer, Workers

__all__ = [
    "CodecDataConfig",
    "CodecLossConfig",
    "CodecModelConfig",
    "CodecOptimConfig",
    "CodecRunConfig",
    "CodecTrainConfig",
    "CodecTrainer",
    "TrainableCodec",
    "Workers",
]
