"""Configuration of a TTS training run: talker and code-predictor shape, data, optimisation.

One JSON file with the sections ``model``, ``data``, ``optim`` and ``run`` (each optional;
unknown sections and keys are refused with one line naming them)::

    {
      "model": {"hidden_size": 256, "num_layers": 4, "predictor_layers": 2},
      "data": {"batch_frames": 2000, "text_vocab_size": 4096},
      "optim": {"lr": 1e-3, "warmup": 200},
      "run": {"steps": 20000, "save_every": 500}
    }

The model is the Qwen3-TTS architecture (a dense Qwen3 talker over summed text-track and
codec-track embeddings, plus the multi-token code predictor of the residual codebooks) at any
size. What the codec decides is not configured here but read from the codec folder: the number
of codebooks ``K`` and their size ``C`` (codebook 0 and the ``1024`` control ids make the
talker's vocabulary ``C + 1024``, as in the release: 2048 + 1024 = 3072).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from omnispeech.config import FrozenConfig
from omnispeech.interleave import SingleStreamPolicy
from omnispeech.talker import MAX_GUIDANCE
from omnispeech.training.asr_config import ASROptimConfig, ASRRunConfig
from omnispeech.training.config import SectionedConfig

# "dual": the released dual track (text beside speech, one text item per position);
# "single": ARIA as one interleaved stream (text items and frames at separate positions).
ARRANGEMENTS = ("dual", "single")
TEXT_MODES = ("stream", "full")  # released streaming-text / non-streaming arrangements
# "bpe": a byte-level BPE trained on the transcripts (as released); "espeak-ipa": espeak-ng IPA
# phonemes, one id per symbol (see omnispeech.pipelines.tts_frontend).
TEXT_FRONTENDS = ("bpe", "espeak-ipa")
# Where single-stream token durations come from: spread evenly over the frames, the word times
# espeak-ng reports while speaking the transcript, or a CTC forced alignment by an ASR model.
ALIGNMENTS = ("even", "espeak", "asr")


@dataclasses.dataclass(frozen=True)
class TTSModelConfig(FrozenConfig):
    """Shape of the talker and its code predictor (defaults: a small CPU-trainable model).

    The released 0.6B model is ``hidden_size`` 1024, ``num_layers`` 28, ``num_heads`` 16,
    ``num_kv_heads`` 8, ``head_dim`` 128, ``intermediate_size`` 3072, ``text_hidden_size``
    2048, and a 5-layer predictor of the same width.
    """

    hidden_size: int = 256  # talker width; also the width of every code embedding
    intermediate_size: int = 768  # SwiGLU width of each talker layer
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2  # grouped-query attention: heads share key/value heads
    head_dim: int = 64
    text_hidden_size: int = 256  # width of the text embedding before text_projection
    predictor_hidden_size: int = 256  # != hidden_size adds small_to_mtp_projection (as 1.7B)
    predictor_intermediate_size: int = 768
    predictor_layers: int = 2
    predictor_heads: int = 4
    predictor_kv_heads: int = 2
    predictor_head_dim: int = 64
    rope_theta: float = 1_000_000.0
    max_positions: int = 4096  # longest prompt + speech the talker is built for (positions)
    arrangement: str = "dual"  # how text meets speech; see ARRANGEMENTS
    # Dual track: per utterance, one of these released arrangements is drawn: "stream" puts
    # one text token beside each frame from the first on, "full" puts the whole text first.
    text_modes: tuple[str, ...] = TEXT_MODES
    # Single stream: text items ahead of their speech, and the bounds of the speech-to-text
    # rate in codec frames (80 ms at 12.5 Hz, 40 ms at 25 Hz) per token (see
    # interleave.SingleStreamPolicy); utterances whose text does not fit in their frames at
    # min_frames_per_token are left out. A codec at 25 Hz needs both bounds doubled.
    lookahead: int = 2
    min_frames_per_token: float = 0.5
    max_frames_per_token: float = 8.0
    # Share of utterances trained with the "auto" language prefix instead of their language
    # tag, so that language="auto" works at inference.
    auto_language: float = 0.2
    # Weight of the code predictor's loss (mean over codebooks 1..K-1) against the talker's.
    predictor_weight: float = 1.0
    # A Qwen3-TTS Base folder (or the OUT/model of `omnispeech train speaker`) whose (frozen)
    # speaker encoder gives every utterance an x-vector for the speaker slot; its output size
    # must equal hidden_size. Empty: no speaker slot (the model speaks in the voices of its
    # data and cannot clone).
    speaker_encoder: str = ""

    def __post_init__(self) -> None:
        if self.arrangement not in ARRANGEMENTS:
            raise ValueError(f"model.arrangement must be one of {ARRANGEMENTS}")
        if not self.text_modes or set(self.text_modes) - set(TEXT_MODES):
            raise ValueError(f"model.text_modes must be a non-empty subset of {TEXT_MODES}")
        for name in ("num_heads", "predictor_heads"):
            kv = getattr(self, name.replace("heads", "kv_heads"))
            if kv < 1 or getattr(self, name) % kv:
                raise ValueError(f"model.{name} must be a multiple of its key/value heads")
        if self.arrangement == "single":
            self.single_policy()  # validates the look-ahead and the bounds
        if not 0 <= self.auto_language <= 1:
            raise ValueError("model.auto_language must lie in [0, 1]")
        if self.predictor_weight < 0:
            raise ValueError("model.predictor_weight must be >= 0")

    def single_policy(self, frames_per_token: float = 3.5) -> SingleStreamPolicy:
        """The single-stream policy. Training takes each token's duration from the data and
        needs only the bounds; inference feeds text at ``frames_per_token`` (clamped to the
        bounds), which the export sets to the training data's own rate: 3.5 frames suits a
        BPE token, but an IPA symbol lasts under one frame, and a target four times too slow
        makes the talker drawl for four times too long."""
        lo, hi = self.min_frames_per_token, self.max_frames_per_token
        target = min(max(frames_per_token, lo), hi)
        return SingleStreamPolicy(self.lookahead, target, lo, hi)


@dataclasses.dataclass(frozen=True)
class TTSSamplingConfig(FrozenConfig):
    """The sampling the export declares in its ``generation_config.json`` (what ``TTS`` uses
    unless a call passes its own). Defaults are the released Qwen3-TTS values; a small model
    may speak more clearly with cooler residual codebooks (``recipes/tts/README.md``).

    Attributes:
        temperature / top_k: codebook 0, drawn by the talker (repetition penalty 1.05 as
            released).
        predictor_temperature / predictor_top_k: codebooks 1..K-1, drawn by the code predictor.
        guidance: classifier-free guidance scale of codebook 0 (1 = none; above 1 needs a
            talker trained with ``data.guidance_dropout``).
    """

    temperature: float = 0.9
    top_k: int = 50
    predictor_temperature: float = 0.9
    predictor_top_k: int = 50
    guidance: float = 1.0

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and self.predictor_temperature > 0):
            raise ValueError("sampling temperatures must be > 0")
        if self.top_k < 1 or self.predictor_top_k < 1:
            raise ValueError("sampling top_k values must be >= 1")
        if not 1 <= self.guidance <= MAX_GUIDANCE:
            raise ValueError(f"sampling.guidance must lie between 1 (none) and {MAX_GUIDANCE:g}")


@dataclasses.dataclass(frozen=True)
class TTSDataConfig(FrozenConfig):
    """Where the speech comes from and how batches are made.

    ``train`` / ``valid``: JSONL manifests (``path``, ``text``, ``language``, optional
    ``split``; paths relative to the manifest), e.g. the one ``omnispeech data build`` writes.
    ``codec``: the speech tokenizer folder (a Qwen3-TTS-Tokenizer-12Hz layout) whose codes the
    talker learns; they are computed once per utterance and cached in the run folder.
    """

    train: str = ""
    valid: str = ""
    codec: str = ""
    train_split: str = "train"
    valid_split: str = "dev"
    languages: tuple[str, ...] = ()  # empty: every language of the training manifest
    batch_frames: int = 2000  # talker positions (prompt + frames) per batch and process
    max_batch: int = 32  # utterances per batch at most
    max_seconds: float = 20.0  # longer utterances are skipped (and counted)
    valid_utterances: int = 32  # held-out utterances scored at every save
    text_vocab_size: int = 4096  # entries of the byte-level BPE trained on the transcripts
    tokenizer: str = ""  # an existing tokenizer.json (with the TTS special tokens) instead
    # What the text track reads (see TEXT_FRONTENDS). With "espeak-ipa" the vocabulary is the
    # phoneme inventory (text_vocab_size and tokenizer are not used), and utterances in a
    # language espeak-ng cannot speak are skipped (counted as no_phonemes).
    text_frontend: str = "bpe"
    # Single stream only: where token durations come from (see ALIGNMENTS); the dual track
    # ignores it. Word times are computed once and cached in the run folder.
    alignment: str = "even"
    aligner: str = ""  # with alignment "asr": an ASR model folder with a CTC head
    # Share of utterances trained with an in-context reference (so that the export clones from
    # a clip and its transcript): another utterance of the same speaker (the manifest's
    # "speaker" field) and language goes first, arranged as the pipeline's in-context prompt
    # (see tts_batch). Utterances without such a partner never get one.
    in_context: float = 0.0
    # Share of the utterances without a reference whose speaker slot holds the x-vector of
    # another clip of their speaker and language, as at inference (see tts_batcher).
    speaker_other_clip: float = 0.0
    # Share of utterances trained unconditioned: their text tokens read as tts_pad and their
    # speaker vector as zeros (TEXT_END, the language tag and any reference stay), so that the
    # export can be sampled with classifier-free guidance (see tts_batcher).
    guidance_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.batch_frames < 1 or self.max_batch < 1 or self.max_seconds <= 0:
            raise ValueError("batch_frames, max_batch and max_seconds must be positive")
        if self.text_vocab_size < 300:
            raise ValueError("data.text_vocab_size must be >= 300 (bytes, merges, specials)")
        if self.text_frontend not in TEXT_FRONTENDS:
            raise ValueError(f"data.text_frontend must be one of {TEXT_FRONTENDS}")
        if self.text_frontend != "bpe" and self.tokenizer:
            raise ValueError("data.tokenizer is a BPE tokenizer: leave it empty with espeak-ipa")
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"data.alignment must be one of {ALIGNMENTS}")
        if not 0 <= self.in_context <= 1:
            raise ValueError("data.in_context must lie in [0, 1]")
        if not 0 <= self.speaker_other_clip <= 1:
            raise ValueError("data.speaker_other_clip must lie in [0, 1]")
        if not 0 <= self.guidance_dropout < 1:
            raise ValueError("data.guidance_dropout must lie in [0, 1)")
        if (self.alignment == "asr") != bool(self.aligner):
            raise ValueError(
                'data.aligner (an ASR folder with a CTC head) goes with data.alignment "asr", '
                "and only with it"
            )


@dataclasses.dataclass(frozen=True)
class TTSTrainConfig(SectionedConfig):
    """A whole TTS training run: one section per concern (``optim`` and ``run`` as for ASR:
    AdamW with warm-up and cosine decay; steps, checkpoints, logging, seed; ``sampling``: what
    the export declares)."""

    model: TTSModelConfig = TTSModelConfig()
    data: TTSDataConfig = TTSDataConfig()
    optim: ASROptimConfig = ASROptimConfig()
    run: ASRRunConfig = ASRRunConfig()
    sampling: TTSSamplingConfig = TTSSamplingConfig()

    _SECTIONS = {
        "model": TTSModelConfig,
        "data": TTSDataConfig,
        "optim": ASROptimConfig,
        "run": ASRRunConfig,
        "sampling": TTSSamplingConfig,
    }

    @classmethod
    def from_file(cls, path: str | Path) -> Any:
        """Read a JSON config; relative paths (manifests, codec, tokenizer, aligner, speaker
        encoder) become relative to the file's folder."""
        cfg = super().from_file(path)
        base = Path(path).resolve().parent
        keys = ("codec", "tokenizer", "aligner")
        data = {k: str(base / v) for k in keys if (v := getattr(cfg.data, k))}
        model = cfg.model
        if model.speaker_encoder:
            model = model.replace(speaker_encoder=str(base / model.speaker_encoder))
        return cfg.replace(data=cfg.data.replace(**data), model=model)
