"""Quality measures of omnispeech's models.

* :mod:`omnispeech.eval.codec`: how closely a codec reconstructs held-out audio
  (multi-scale log-mel distance, PESQ-WB and STOI, per file and on average).
* :mod:`omnispeech.eval.asr`: recognition CER / WER per language over a JSONL manifest.
* :mod:`omnispeech.eval.tts`: synthesised speech against reference recordings
  (intelligibility, speaker similarity, duration ratio).
* :mod:`omnispeech.eval.text`: per-script text normalisation and error rates.
* :mod:`omnispeech.eval.signal`: PESQ-WB, STOI and mel distance of two signals.
* :mod:`omnispeech.eval.speaker`: speaker embeddings and their cosine similarity.
* :mod:`omnispeech.eval.report`: JSON and markdown reports.

PESQ, STOI, error rates and the default speaker encoder need the optional packages of the
``eval`` extra (``pip install 'omnispeech[eval]'``); they are imported only when used.
"""

from omnispeech.eval.asr import (
    ASRScore,
    LanguageScore,
    ManifestEntry,
    Transcriber,
    UtteranceResult,
    evaluate_asr,
    read_manifest,
)
from omnispeech.eval.codec import CodecScore, evaluate_codec
from omnispeech.eval.report import write_report
from omnispeech.eval.signal import (
    SignalScore,
    mel_distance,
    pesq_wb,
    signal_metrics_available,
    signal_scores,
    stoi,
)
from omnispeech.eval.speaker import (
    GE2ESpeakerEncoder,
    SpeakerEncoder,
    cosine_similarity,
    default_speaker_encoder,
    speaker_similarity,
)
from omnispeech.eval.sphinx import PocketSphinx
from omnispeech.eval.text import (
    EditCounts,
    ErrorRates,
    edit_counts,
    error_rates,
    normalize_text,
    primary_metric,
    tokenize,
)
from omnispeech.eval.tts import TTSGroupScore, TTSScore, TTSUtterance, evaluate_tts
from omnispeech.eval.tts_synth import ClonePlan, plan_clones, synthesize_plans

__all__ = [
    "ASRScore",
    "ClonePlan",
    "CodecScore",
    "EditCounts",
    "ErrorRates",
    "GE2ESpeakerEncoder",
    "LanguageScore",
    "PocketSphinx",
    "ManifestEntry",
    "SignalScore",
    "SpeakerEncoder",
    "TTSGroupScore",
    "TTSScore",
    "TTSUtterance",
    "Transcriber",
    "UtteranceResult",
    "cosine_similarity",
    "default_speaker_encoder",
    "edit_counts",
    "error_rates",
    "evaluate_asr",
    "evaluate_codec",
    "evaluate_tts",
    "mel_distance",
    "normalize_text",
    "plan_clones",
    "pesq_wb",
    "primary_metric",
    "read_manifest",
    "signal_metrics_available",
    "signal_scores",
    "speaker_similarity",
    "stoi",
    "synthesize_plans",
    "tokenize",
    "write_report",
]
