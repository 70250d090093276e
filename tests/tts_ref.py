"""A tiny random Qwen3-TTS folder built by omnispeech itself (no network, a few seconds).

Talker (16 code groups, 2048-entry codebooks so that its codes are valid for the codec), code
predictor, ECAPA speaker encoder, a byte-level tokenizer with the Qwen/TTS special tokens (or,
with ``phonemes``, the espeak-ng phoneme front end declared in ``text_frontend.json``) and a
tiny 12 Hz codec exported by the codec training code, all in the released folder layout.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from omnispeech.pipelines import espeak, tts_loop
from omnispeech.pipelines.codec import Codec
from omnispeech.pipelines.tts import TTS
from omnispeech.pipelines.tts_frontend import PhonemeFrontend
from omnispeech.pipelines.tts_loop import GenerationWarning
from omnispeech.pipelines.tts_prompt import VoicePrompt
from omnispeech.talker import (
    CodePredictorConfig,
    SpeakerEncoder,
    SpeakerEncoderConfig,
    Talker,
    TalkerConfig,
    TalkerSpec,
    TalkerTokens,
)
from omnispeech.testing import tiny_tokenizer
from omnispeech.training.codec_model import TrainableCodec
from omnispeech.training.config import CodecModelConfig, CodecRunConfig

needs_espeak = pytest.mark.skipif(
    not espeak.available(),
    reason="libespeak-ng is not installed (apt-get install libespeak-ng1, or pip install "
    "espeakng-loader)",
)


@contextlib.contextmanager
def short_guard(
    monkeypatch: pytest.MonkeyPatch, seconds: float, per_token: float
) -> Iterator[None]:
    """Random talkers never choose end-of-speech: a duration guard of ``seconds`` plus
    ``per_token`` seconds per text token ends every utterance, without its warning."""
    monkeypatch.setattr(tts_loop, "GUARD_SECONDS", seconds)
    monkeypatch.setattr(tts_loop, "GUARD_SECONDS_PER_TOKEN", per_token)
    monkeypatch.setattr(PhonemeFrontend, "guard_seconds_per_token", per_token)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GenerationWarning)
        yield


TTS_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|tts_pad|>", "<|tts_text_bos|>", "<|tts_text_eod|>",
)  # fmt: skip
HIDDEN = 32


def tiny_codec(path: Path, seed: int = 0, frame_rate: float = 12.5) -> Path:
    """A tiny random codec folder; at 25 frames per second the decoder upsamples 2 x 480."""
    torch.manual_seed(seed)
    rate = {} if frame_rate == 12.5 else {"frame_rate": frame_rate, "upsampling_ratios": (2,)}
    cfg = CodecModelConfig(
        **rate,
        num_codebooks=16,
        codebook_size=2048,
        encoder_filters=4,
        encoder_dim=32,
        encoder_layers=1,
        encoder_heads=2,
        decoder_hidden=32,
        decoder_layers=1,
        decoder_heads=2,
        decoder_latent=32,
        decoder_dim=32,
    )
    return TrainableCodec(cfg, CodecRunConfig()).export(path)


def tiny_tts(path: Path, seed: int = 0, phonemes: bool = False, frame_rate: float = 12.5) -> Path:
    """Write a tiny random Qwen3-TTS Base folder at ``path`` and return it; with ``phonemes``
    it reads text as espeak-ng IPA (default inventory) instead of BPE; ``frame_rate`` is its
    codec's."""
    tok = PhonemeFrontend() if phonemes else tiny_tokenizer(TTS_SPECIALS)
    sid = tok.tokenizer.token_to_id if phonemes else tok.token_to_id
    tokens = TalkerTokens(
        tts_pad=sid("<|tts_pad|>"),
        tts_bos=sid("<|tts_text_bos|>"),
        tts_eos=sid("<|tts_text_eod|>"),
        im_start=sid("<|im_start|>"),
        im_end=sid("<|im_end|>"),
        languages={"english": 2050, "german": 2053, "chinese": 2055, "beijing_dialect": 2074},
    )
    talker_cfg = TalkerConfig(
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        max_positions=4096,
        text_vocab_size=tok.vocab_size if phonemes else tok.get_vocab_size(),
        text_hidden_size=24,
        projection_size=24,
    )
    predictor = CodePredictorConfig(
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_layers=1,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        input_size=HIDDEN,
    )
    torch.manual_seed(seed)
    talker = Talker(TalkerSpec(talker_cfg, predictor, tokens, "qwen3_tts")).eval()
    speaker = SpeakerEncoder(
        SpeakerEncoderConfig(
            enc_dim=HIDDEN,
            enc_channels=(16, 16, 16, 16, 48),
            enc_attention_channels=8,
            enc_res2net_scale=4,
            enc_se_channels=8,
        )
    ).eval()
    path.mkdir(parents=True, exist_ok=True)
    codec_dir = tiny_codec(path / "speech_tokenizer", seed, frame_rate)
    tts = TTS(talker, Codec.from_pretrained(codec_dir), tok, speaker)
    tts._source = path
    tts.save_pretrained(path)
    return path


def golden_voice(mode: str, cases) -> VoicePrompt:
    """The voice of a qwen-tts golden case (``cases``: the golden ``.npz``) by prompt mode:
    ``xvector`` (speaker vector), ``icl`` (vector + reference codes and text), ``dylan``
    (built-in speaker), ``design`` (no speaker slot; an instruction instead)."""
    speaker = torch.from_numpy(cases["speaker"])
    return {
        "xvector": VoicePrompt(speaker=speaker),
        "icl": VoicePrompt(
            speaker=speaker,
            ref_codes=torch.from_numpy(cases["ref_code"]).T,
            ref_text_ids=cases["ref_text"].tolist(),
        ),
        "dylan": VoicePrompt(speaker_id="Dylan"),
        "design": VoicePrompt(),
    }[mode]


# The seven qwen-tts golden generations: (case, voice mode, language, arrangement).
GOLDEN_CASES = [
    ("xvector_english_stream", "xvector", "english", "stream"),
    ("xvector_auto_nonstream", "xvector", "auto", "full"),
    ("icl_auto_stream", "icl", "auto", "stream"),
    ("icl_english_nonstream", "icl", "english", "full"),
    ("speaker_dylan_chinese_nonstream", "dylan", "chinese", "full"),
    ("design_english_nonstream", "design", "english", "full"),
    ("design_auto_stream", "design", "auto", "stream"),
]


def golden_instruct(mode: str, cases) -> list[int] | None:
    """The VoiceDesign instruction turn of a golden case, None for the other modes:
    <|im_start|> user \n {instruction} <|im_end|> \n with the golden model's small ids."""
    if mode != "design":
        return None
    return [1004, 78, 10, *cases["instruct"].tolist(), 1005, 10]
