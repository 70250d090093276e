"""int8 weight-only ASR decoding: logits close to float32, the same greedy transcripts where
the float model's choices are clear, and ``omnispeech asr --int8``."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from omnispeech.audio import log_mel_spectrogram
from omnispeech.cli import main
from omnispeech.core.quant import Int8Linear
from omnispeech.errors import CheckpointError, InputError
from omnispeech.pipelines import ASR

STEPS = 16


@pytest.fixture(scope="module")
def pair(lively_asr):
    _, folder = lively_asr
    return folder, ASR.from_pretrained(folder), ASR.from_pretrained(folder, quantize="int8")


def _clip(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)


def _forced_logits(asr: ASR, tokens: torch.Tensor, answer: list[int]) -> torch.Tensor:
    """Logits ``[len(answer) + 1, V]`` at the answer's positions, the answer fed back."""
    ids = torch.tensor(asr.prompt_ids(tokens.shape[0], None) + answer)
    with torch.no_grad():
        embeds = asr.decoder.embed_tokens(ids)
        embeds[ids == asr.audio_pad_id] = tokens.to(embeds)
        hidden = asr.decoder(embeds[None])
        return asr._logits(hidden)[0, -len(answer) - 1 :].float()


def test_quantized_layers_and_dtypes(pair):
    _, _, q = pair
    layers = [m for m in q.decoder.modules() if isinstance(m, Int8Linear)]
    assert len(layers) == 7 * q.decoder.cfg.num_layers
    assert isinstance(q.lm_head, Int8Linear)
    # The decoder computes in bfloat16 (the fused kernel's input); the encoder stays float32.
    assert q.decoder.norm.weight.dtype == torch.bfloat16
    assert next(q.encoder.parameters()).dtype == torch.float32
    with pytest.raises(InputError, match="already"):
        q.quantize_int8()


def test_int8_logits_close_and_transcripts_agree_up_to_near_ties(pair):
    """Teacher-forced logits of int8 against float32 on six random clips, and the greedy
    transcripts decoded through int8's own cache.

    Measured: the largest logit error is 0.22-0.59 (2-6% of the largest logit; bfloat16
    activations alone account for about half of it). The random recogniser has near ties
    (top-two margins down to 0.003) where any rounding may pick the other token, so the
    transcripts must agree exactly up to the first step whose float margin is below twice
    that clip's largest error, and entirely when there is none.
    """
    _, f, q = pair
    agreed = 0
    for seed, seconds in [(7, 0.7), (23, 2.37), (51, 5.1), (93, 9.3), (3, 1.2), (11, 3.3)]:
        feats = log_mel_spectrogram(torch.from_numpy(_clip(seed, seconds)))
        with torch.no_grad():
            tokens = f.encoder(feats[None]).tokens[0]
        want = f.generate(tokens, None, max_new_tokens=STEPS)
        lf, lq = _forced_logits(f, tokens, want), _forced_logits(q, tokens, want)
        err = (lf - lq).abs().max()
        assert err < 0.08 * lf.abs().max(), err
        assert (lf.argmax(-1) == lq.argmax(-1)).float().mean() >= 0.75
        top2 = lf.topk(2, dim=-1).values
        ties = ((top2[:, 0] - top2[:, 1]) < 2 * err).nonzero()
        got = q.generate(tokens, None, max_new_tokens=STEPS)
        if len(ties) == 0:
            assert got == want
            agreed += len(want)
        else:
            first = int(ties[0])
            assert got[:first] == want[:first]
            agreed += first
    # measured: the first near tie comes early on this recogniser (1 token in all)
    assert agreed >= 1


def test_int8_transcript_equals_float_on_a_clear_clip(pair):
    """The 0.7 s clip: the float decoding's smallest margin (0.19) is wide enough here, and
    int8 gives the same 6 tokens, in both language modes."""
    _, f, q = pair
    wav = _clip(7, 0.7)
    for language in (None, "English"):
        want = f.transcribe(wav, language=language)
        got = q.transcribe(wav, language=language)
        assert got.token_ids == want.token_ids
    assert len(f.transcribe(wav).token_ids) == 6


def test_quantized_model_is_not_saved(pair, tmp_path):
    _, _, q = pair
    with pytest.raises(CheckpointError, match="int8"):
        q.save_pretrained(tmp_path / "q")
    with pytest.raises(InputError, match="quantize"):
        ASR.from_pretrained(pair[0], quantize="int3")


def test_cli_int8(pair, tmp_path):
    folder, _, q = pair
    path = tmp_path / "clip.wav"
    sf.write(path, _clip(7, 0.7), 16000)
    result = CliRunner().invoke(main, ["asr", str(path), "-m", str(folder), "--int8"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == q.transcribe(path).text
