"""The talker: the codec-frame LM of Qwen3-TTS / Qwen3-Omni, its multi-token predictor of the
residual codebooks, and the speaker encoder used for voice cloning."""

from omnispeech.talker.code_predictor import CodePredictor
from omnispeech.talker.config import CodePredictorConfig, TalkerConfig, TalkerSpec, TalkerTokens
from omnispeech.talker.contrast import SpeakerContrast
from omnispeech.talker.model import (
    MAX_GUIDANCE,
    GenerationConfig,
    Talker,
    TalkerState,
    read_spec,
)
from omnispeech.talker.speaker import SpeakerEncoder, SpeakerEncoderConfig

__all__ = [
    "MAX_GUIDANCE",
    "CodePredictor",
    "CodePredictorConfig",
    "GenerationConfig",
    "SpeakerContrast",
    "SpeakerEncoder",
    "SpeakerEncoderConfig",
    "Talker",
    "TalkerConfig",
    "TalkerSpec",
    "TalkerState",
    "TalkerTokens",
    "read_spec",
]
