"""TTS with a talker trained on the single stream (ARIA): the export loads and speaks with the
single-stream loop, that loop feeds exactly what training showed the talker, text in pieces
gives the speech of the whole text, and folders without the declaration keep the dual loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from omnispeech.errors import CheckpointError, InputError
from omnispeech.pipelines import TTS, tts_single
from omnispeech.pipelines.tts_prompt import VoicePrompt, language_tag
from omnispeech.pipelines.tts_single import read_arrangement
from omnispeech.training.tts_batch import TTSBatch, arrange_single
from omnispeech.training.tts_trainer import TTSTrainer
from tests.test_tts_training import _config, _tone
from tests.tts_ref import short_guard, tiny_codec

TEXTS = ["open the file", "close the window"]
TEXT = "open the file, close the window"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[TTSTrainer, Path]:
    """A tiny talker trained two steps on the single stream (two tones standing in for speech)
    and its export."""
    return train_single(tmp_path_factory.mktemp("tts_single"))


def train_single(root: Path, **data: float) -> tuple[TTSTrainer, Path]:
    """The trainer and export of :func:`trained` in ``root``, with ``data`` config changes."""
    lines = []
    for n, text in enumerate(TEXTS):
        sf.write(root / f"u{n}.wav", _tone(1.0 + 0.2 * n, 110 + 20 * n, n), 24000)
        lines.append({"path": f"u{n}.wav", "text": text, "language": "en", "split": "train"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    tiny_codec(root / "codec")
    cfg = _config(root, steps=2, save_every=2)
    cfg = cfg.replace(
        model=cfg.model.replace(arrangement="single", auto_language=0.0),
        data=cfg.data.replace(valid="", **data),
    )
    trainer = TTSTrainer(cfg, root / "run", progress=False)
    folder = trainer.fit(progress=False)
    trainer.model.eval()
    return trainer, folder


@pytest.fixture(scope="module")
def trainer(trained) -> TTSTrainer:
    return trained[0]


@pytest.fixture(scope="module")
def tts(trained) -> TTS:
    return TTS.from_pretrained(trained[1])


def test_single_stream_export_loads_and_speaks(trainer, tts, tmp_path, monkeypatch):
    # The export feeds text at the training data's own pace: its frames per text token.
    utterances = trainer.train_cache.utterances
    frames = sum(u.frames for u in utterances)
    tokens = sum(len(trainer.batcher.text_ids[i]) for i in range(len(utterances)))
    assert trainer.frames_per_token == pytest.approx(frames / tokens)
    assert tts.single == trainer.cfg.model.single_policy(frames / tokens)
    assert tts.single.frames_per_token != trainer.cfg.model.single_policy().frames_per_token
    calls = []
    real = tts_single.single_utterance

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(tts_single, "single_utterance", counted)
    with short_guard(monkeypatch, 0.8, 0.0):
        wav = tts.synthesize("open the file", language="english", seed=0)
    assert calls and wav.ndim == 1 and wav.size > 0 and np.isfinite(wav).all()
    # save_pretrained keeps the declaration; a reference transcript too long for its frames
    # (20 tokens in 3 frames) and dual arrangements are refused.
    tts.save_pretrained(tmp_path / "copy")
    assert TTS.from_pretrained(tmp_path / "copy").single == tts.single
    ref = VoicePrompt(ref_codes=torch.zeros(16, 3, dtype=torch.long), ref_text_ids=[5] * 20)
    with pytest.raises(InputError, match="longer clip"):
        tts.codes("open the file", ref, seed=0)
    ref = VoicePrompt(ref_codes=torch.zeros(16, 3, dtype=torch.long), ref_text_ids=[5])
    with short_guard(monkeypatch, 0.8, 0.0):
        assert tts.codes("open the file", ref, seed=0).shape[0] == 16  # in-context cloning
    with pytest.raises(InputError, match="single stream"):
        tts.codes("open the file", seed=0, arrangement="full")


@pytest.mark.parametrize("pieces", [False, True])
def test_generation_inputs_equal_the_training_sequence(trainer, tts, monkeypatch, pieces):
    """Every vector the loop feeds the talker (prompt, then each frame's position and the text
    positions after it) equals, position by position, the training sequence arrange_single
    builds for the same text and the generated frames."""
    batcher = trainer.batcher
    text_ids = batcher.text_ids[1]
    n = len(text_ids)
    N = 3 * n + 1  # frames: the duration guard cuts there, and the rate matches training's N / n
    monkeypatch.setattr(tts, "single", tts.single.replace(frames_per_token=N / n))
    seen: list[torch.Tensor] = []
    hook = tts.talker.model.register_forward_pre_hook(lambda m, a: seen.append(a[0][0].clone()))
    text = [TEXTS[1][:4], TEXTS[1][4:9], TEXTS[1][9:]] if pieces else TEXTS[1]
    generation = tts.generation.replace(min_frames=10**6)  # no early end
    try:
        with short_guard(monkeypatch, N / 12.5 - 0.001, 0.0):
            codes = tts.codes(text, language="english", seed=4, generation=generation)
    finally:
        hook.remove()
    assert codes.shape == (16, N)
    ids = tts.talker.spec.tokens
    tag = language_tag(tts.talker, "english", None)
    seq = arrange_single(text_ids, codes, ids, batcher.role_ids, tag, False, tts.single)
    x = embed_sequence(trainer, seq, codes)
    fed = torch.cat(seen)
    assert fed.shape == x.shape
    torch.testing.assert_close(fed, x, rtol=1e-6, atol=1e-5)
    # The prompt ends right before frame 0 is sampled: at the position trained to predict it.
    assert seen[0].shape[0] - 1 == seq.frame_at[0]


def embed_sequence(trainer, seq, codes, speaker=None) -> torch.Tensor:  # noqa: ANN001
    """The talker inputs ``[L, hidden]`` training gives one arranged sequence with its frames
    ``codes`` ``[K, N]`` (and ``speaker`` ``[hidden]`` in its slot, if any)."""
    L = len(seq.text)
    mask = torch.zeros(1, L, dtype=torch.bool)
    if speaker is not None:
        mask[0, seq.speaker_at] = True
    batch = TTSBatch(
        text_ids=torch.tensor([seq.text]),
        codec_ids=torch.tensor([seq.codec]),
        speaker_mask=mask,
        speakers=None if speaker is None else speaker[None],
        labels=torch.tensor([seq.labels]),
        frame_index=torch.tensor(seq.frame_at),
        frame_codes=codes.T,
        frames=codes.shape[1],
    )
    with torch.no_grad():
        return trainer.model.embed(batch)[0]


def test_text_in_pieces_gives_the_speech_of_the_whole_text(tts, monkeypatch):
    log: list[str] = []

    def pieces():
        for i, cut in enumerate([(0, 5), (5, 9), (9, 15), (15, 21), (21, len(TEXT))]):
            log.append(f"piece {i}")
            yield TEXT[slice(*cut)]

    with short_guard(monkeypatch, 1.0, 0.3):
        whole = tts.synthesize(TEXT, language="english", seed=7)
        chunks = []
        for chunk in tts.stream(pieces(), language="english", seed=7):
            log.append("chunk")
            chunks.append(chunk)
    streamed = np.concatenate(chunks)
    assert streamed.shape == whole.shape
    assert np.abs(streamed - whole).max() < 1e-5
    # Text is read only as the speech needs it: audio comes out before the last piece is read.
    assert log.index("chunk") < log.index("piece 4")


def test_a_folder_without_the_declaration_runs_the_dual_loop(tts, monkeypatch):
    assert read_arrangement({}) is None
    assert read_arrangement({"talker_arrangement": {"kind": "dual"}}) is None
    with pytest.raises(CheckpointError, match="kind"):
        read_arrangement({"talker_arrangement": {"kind": "triple"}})
    with pytest.raises(CheckpointError, match="unusable"):
        read_arrangement({"talker_arrangement": {"kind": "single", "lookahead": -1}})

    def refuse(*args):
        raise AssertionError("the dual track ran the single-stream loop")

    monkeypatch.setattr(tts_single, "single_utterance", refuse)
    dual = TTS(tts.talker, tts.codec, tts.frontend, generation=tts.generation)
    assert dual.single is None
    with short_guard(monkeypatch, 0.8, 0.0):
        codes = dual.codes("open the file", language="english", seed=0)
    assert codes.shape[0] == 16 and codes.shape[1] >= 1
