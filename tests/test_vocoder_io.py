"""Code2Wav loading, the codes file, the `vocode` CLI, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from omnispeech.cli import main
from omnispeech.codes import load_codes, save_codes
from omnispeech.errors import CheckpointError, InputError
from omnispeech.vocoder import Code2Wav
from tests.conftest import write_folder
from tests.vocoder_ref import ref_code2wav, write_omni_folder


@pytest.fixture(scope="module")
def omni_folder(tmp_path_factory):
    ref = ref_code2wav(seed=11)
    # Other components' tensors live beside code2wav in a real Omni folder.
    extra = {"thinker.lm_head.weight": torch.ones(4, 4), "talker.codec_head.weight": torch.ones(2)}
    return write_omni_folder(tmp_path_factory.mktemp("omni"), ref, extra)


@pytest.fixture(scope="module")
def vocoder(omni_folder):
    return Code2Wav.from_pretrained(omni_folder)


def _codes(t=6, b=1, seed=0, high=64):
    return torch.randint(0, high, (b, 16, t), generator=torch.Generator().manual_seed(seed))


# -- loading ---------------------------------------------------------------------------------
def test_reads_only_its_own_tensors_and_round_trips(vocoder, tmp_path):
    assert all(not k.startswith(("thinker", "talker")) for k in vocoder.state_dict())
    vocoder.save_pretrained(tmp_path)
    again = Code2Wav.from_pretrained(tmp_path)
    codes = _codes()
    assert torch.equal(again(codes), vocoder(codes))


def test_wrong_folders_are_refused(tmp_path, omni_folder):
    asr = write_folder(tmp_path / "asr", {"model_type": "qwen3_asr"}, {"x": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="no Code2Wav vocoder"):
        Code2Wav.from_pretrained(asr)
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        Code2Wav.from_pretrained(tmp_path / "missing")
    cfg = {"model_type": "qwen3_omni_moe", "code2wav_config": {"hidden_size": 32}}
    thinking = write_folder(tmp_path / "thinking", cfg, {"thinker.x": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="no tensor starts with 'code2wav.'"):
        Code2Wav.from_pretrained(thinking)
    ref = ref_code2wav(hidden_size=16, num_attention_heads=2, num_key_value_heads=2)
    state = {f"code2wav.{k}": v for k, v in ref.state_dict().items()}
    mismatched = write_folder(
        tmp_path / "bad",
        {"model_type": "qwen3_omni_moe", "code2wav_config": ref_code2wav().config.to_dict()},
        state,
    )
    with pytest.raises(CheckpointError, match="shape mismatches"):
        Code2Wav.from_pretrained(mismatched)


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "codes,message",
    [
        (_codes(high=64) + 1, r"must lie in \[0, 63\], got values in \[1, 64\]"),
        (_codes() - 1, r"must lie in \[0, 63\]"),
        (_codes()[:, :8], "expected 16 codebooks, got 8"),
        (_codes(t=0), "empty code sequence"),
        (_codes().float(), "must be integers"),
        (_codes()[0], r"must be \[batch, codebooks, frames\]"),
    ],
)
def test_bad_codes_get_clear_errors(vocoder, codes, message):
    with pytest.raises(InputError, match=message):
        vocoder(codes)


def test_bad_stream_calls(vocoder):
    with pytest.raises(RuntimeError, match="streaming"):
        vocoder.push(_codes())
    with vocoder.streaming(2):
        with pytest.raises(InputError, match="2 streams, got codes for 1"):
            vocoder.push(_codes())
        with pytest.raises(InputError, match="lengths must be"):
            vocoder.push(_codes(b=2), torch.tensor([7, 1]))
        with pytest.raises(RuntimeError, match="push\\(\\) and flush\\(\\)"):
            vocoder(_codes(b=2))


# -- codes file ------------------------------------------------------------------------------
def test_codes_file_round_trip(tmp_path):
    codes = np.random.default_rng(0).integers(0, 2048, (2, 16, 9))
    save_codes(tmp_path / "c.npz", codes, [9, 4], 24000, 12.5, 2048, "Qwen3-TTS-Tokenizer-12Hz")
    data = load_codes(tmp_path / "c.npz")
    assert np.array_equal(data.codes, codes) and data.lengths.tolist() == [9, 4]
    assert (data.sample_rate, data.frame_rate, data.codebook_size) == (24000, 12.5, 2048)
    assert data.model == "Qwen3-TTS-Tokenizer-12Hz"
    data.check_compatible(16, 2048, 24000, 12.5)
    with pytest.raises(InputError, match="12.5 frames/s; this model decodes 25"):
        data.check_compatible(16, 2048, 24000, 25.0)
    with pytest.raises(InputError, match="16 codebooks; this model decodes 8"):
        data.check_compatible(8, 2048, 24000, 12.5)
    save_codes(tmp_path / "t.npz", codes[0].T)  # time-major, as some tools write them
    with pytest.raises(InputError, match="look time-major"):
        load_codes(tmp_path / "t.npz").check_compatible(16, 2048, 24000, 12.5)


def test_bad_codes_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a codes file"):
        load_codes(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", tokens=np.zeros((16, 3), dtype=np.int64))
    with pytest.raises(InputError, match="no 'codes' array"):
        load_codes(tmp_path / "other.npz")
    np.savez(tmp_path / "float.npz", codes=np.zeros((16, 3)))
    with pytest.raises(InputError, match="must be integers"):
        load_codes(tmp_path / "float.npz")
    np.savez(tmp_path / "len.npz", codes=np.zeros((2, 16, 3), dtype=np.int64), lengths=[3, 4])
    with pytest.raises(InputError, match="lengths must be 2 values"):
        load_codes(tmp_path / "len.npz")


# -- CLI -------------------------------------------------------------------------------------
def test_cli_vocode_writes_the_decoded_audio(vocoder, omni_folder, tmp_path):
    codes = _codes(t=140, seed=3)  # more than one streaming step of the CLI
    save_codes(tmp_path / "c.npz", codes[0].numpy(), sample_rate=24000, frame_rate=12.5)
    out = tmp_path / "out.wav"
    result = CliRunner().invoke(
        main, ["vocode", str(tmp_path / "c.npz"), "-o", str(out), "--model", str(omni_folder)]
    )
    assert result.exit_code == 0, result.output
    wav, sr = sf.read(out, dtype="float32")
    expected = vocoder(codes)[0, 0].numpy()
    assert sr == 24000 and wav.shape == expected.shape
    assert np.abs(wav - expected).max() < 1.5 / 32768  # 16-bit PCM


def test_cli_vocode_tune_stores_this_machines_plan(vocoder, omni_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("OMNISPEECH_CACHE", str(tmp_path / "cache"))
    codes = _codes(t=8, seed=4)
    save_codes(tmp_path / "c.npz", codes[0].numpy())
    out = tmp_path / "out.wav"
    args = ["vocode", str(tmp_path / "c.npz"), "-o", str(out), "-m", str(omni_folder), "--tune"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "tiles: coarse" in result.output and "measured" in result.output
    # The plan is kept for this machine, and every Code2Wav built here picks it up.
    assert (tmp_path / "cache" / "code2wav_tiles.json").is_file()
    assert Code2Wav.from_pretrained(omni_folder).tiles.source == "measured"
    wav, _ = sf.read(out, dtype="float32")
    assert np.abs(wav - vocoder(codes)[0, 0].numpy()).max() < 1.5 / 32768  # tiles: same audio
    result = CliRunner().invoke(main, [*args, "--device", "meta"])
    assert result.exit_code == 1 and "--tune measures the CPU" in result.output


def test_cli_vocode_batch_and_errors(omni_folder, tmp_path):
    codes = _codes(t=5, b=2).numpy()
    save_codes(tmp_path / "b.npz", codes, lengths=[5, 3])

    def run(*args):
        return CliRunner().invoke(main, ["vocode", *map(str, args), "--model", str(omni_folder)])

    assert run(tmp_path / "b.npz", "-o", tmp_path / "o.wav").exit_code == 0
    assert sf.info(tmp_path / "o_1.wav").frames == 3 * 1920 - 555
    save_codes(tmp_path / "sr.npz", codes[0], sample_rate=16000)
    bad = {
        tmp_path / "missing.npz": "no such file",
        tmp_path / "sr.npz": "16000 Hz audio; this model makes 24000 Hz",
    }
    save_codes(tmp_path / "range.npz", codes[0] + 64)
    bad[tmp_path / "range.npz"] = "must lie in"
    for path, message in bad.items():
        result = run(path, "-o", tmp_path / "x.wav")
        assert result.exit_code == 1
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.wav").exists()  # nothing written for refused input
