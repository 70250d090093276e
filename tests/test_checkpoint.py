"""Checkpoint folders: lazy reads by prefix, sharded indexes, strict keys with named errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from omnispeech import checkpoint
from omnispeech.checkpoint import CheckpointFolder, build_on_meta, load_state
from omnispeech.encoder import AudioEncoder, EncoderConfig
from omnispeech.errors import CheckpointError
from omnispeech.pipelines import ASR

SMALL = EncoderConfig(
    d_model=16,
    encoder_layers=1,
    encoder_attention_heads=2,
    encoder_ffn_dim=32,
    output_dim=24,
    downsample_hidden_size=8,
)


def _sharded(tmp_path, tensors: dict[str, torch.Tensor], config: dict, shards: int = 3):
    names = sorted(tensors)
    weight_map = {}
    for i in range(shards):
        part = names[i::shards]
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: tensors[k].contiguous() for k in part}, str(tmp_path / file))
        weight_map.update(dict.fromkeys(part, file))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_sharded_released_layout_reads_only_the_prefix(tmp_path, monkeypatch):
    enc = AudioEncoder(SMALL)
    tensors = {f"thinker.audio_tower.{k}": v for k, v in enc.net.state_dict().items()}
    tensors["thinker.model.embed_tokens.weight"] = torch.randn(10, 4)
    config = {
        "model_type": "qwen3_omni_moe",
        "thinker_config": {"audio_config": {**SMALL.to_dict(), "encoder_layers": 1}},
    }
    config["thinker_config"]["audio_config"].pop("pad_short_batches_to_longest")
    folder = CheckpointFolder(_sharded(tmp_path, tensors, config))
    read: list[str] = []
    real_open = checkpoint.safe_open

    class Spy:  # records every tensor read, so the test can prove the thinker is never read
        def __init__(self, *args, **kwargs):
            self.handle = real_open(*args, **kwargs)

        def __enter__(self):
            self.inner = self.handle.__enter__()
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

        def get_tensor(self, name):
            read.append(name)
            return self.inner.get_tensor(name)

    monkeypatch.setattr(checkpoint, "safe_open", Spy)
    part = folder.read("thinker.audio_tower.")
    assert set(part) == set(enc.net.state_dict())
    assert "embed_tokens.weight" not in part
    assert read and all(name.startswith("thinker.audio_tower.") for name in read)
    loaded = AudioEncoder.from_pretrained(tmp_path)
    assert loaded.cfg.pad_short_batches_to_longest  # an Omni folder keeps the Omni rule
    for k, v in enc.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[k], v)


def test_strict_keys_name_missing_and_unexpected():
    enc = build_on_meta(lambda: AudioEncoder(SMALL))
    state = {k: torch.zeros(v.shape) for k, v in AudioEncoder(SMALL).net.state_dict().items()}
    state.pop("ln_post.weight")
    state["extra.weight"] = torch.zeros(1)
    state["proj1.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as info:
        load_state(enc.net, state, "test-folder")
    msg = str(info.value)
    assert "missing keys [ln_post.weight]" in msg
    assert "unexpected keys [extra.weight]" in msg
    assert "proj1.bias (3,) != (16,)" in msg


def test_meta_build_allocates_nothing_until_loaded():
    enc = build_on_meta(lambda: AudioEncoder(SMALL))
    assert all(p.is_meta for p in enc.parameters())
    # Derived tables are real so that loading need not recompute them.
    assert not enc.net.positions.is_meta


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "no such checkpoint folder"),
        (lambda p: p.mkdir(), "no config.json"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("{oops")), "unreadable config.json"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("{}")), "no *.safetensors"),
        (
            lambda p: (
                p.mkdir(),
                (p / "config.json").write_text("{}"),
                (p / "model.safetensors").write_bytes(b"garbage"),
            ),
            "not a readable safetensors file",
        ),
    ],
)
def test_broken_folders_raise_checkpoint_error(tmp_path, setup, message):
    path = tmp_path / "ckpt"
    setup(path)
    with pytest.raises(CheckpointError, match=message.replace("*", r"\*")):
        CheckpointFolder(path)


def test_wrong_kind_of_checkpoint(tmp_path):
    save_file({"decoder.weight": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_tts_tokenizer_12hz"}))
    with pytest.raises(CheckpointError, match="not an audio-encoder checkpoint"):
        AudioEncoder.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="not a Qwen3-ASR checkpoint"):
        ASR.from_pretrained(tmp_path)


def test_config_without_matching_weights(tmp_path):
    save_file({"foo.weight": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    config = {"model_type": "qwen3_asr_encoder", **SMALL.to_dict()}
    config.pop("pad_short_batches_to_longest")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="no tensors under 'conv2d1.'"):
        AudioEncoder.from_pretrained(tmp_path)


def test_hub_name_without_huggingface_hub_is_one_line_naming_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(CheckpointError) as err:
        checkpoint.resolve_folder("Qwen/Qwen3-ASR-0.6B")
    message = str(err.value)
    assert "pip install 'omnispeech[hub]'" in message and "\n" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_failed_download_is_one_line(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("Name or service not known\nPlease check your internet connection.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError) as err:
        checkpoint.resolve_folder("Qwen/Qwen3-ASR-0.6B")
    message = str(err.value)
    assert "\n" not in message and "Name or service not known" in message
    assert "local checkpoint folder" in message


def test_bundled_names_and_local_folders_never_reach_the_hub(tmp_path, monkeypatch):
    import huggingface_hub

    from omnispeech import bundled

    def refuse(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    (tmp_path / "asr-small").mkdir()
    (tmp_path / "asr-small" / "config.json").write_text("{}")
    monkeypatch.setattr(bundled, "_HERE", tmp_path)
    assert checkpoint.resolve_folder("omnispeech-asr-small") == tmp_path / "asr-small"
    assert checkpoint.resolve_folder(tmp_path) == tmp_path
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        checkpoint.resolve_folder("./Qwen/missing")
