"""Released folders as users hold them: a sharded Qwen3-Omni checkpoint of which only the
speech side's shards are present, and hub downloads that fetch only a component's shards.

The tiny Omni model is saved by transformers 5.23.0 and then re-sharded the way the released
Qwen3-Omni-30B-A3B-Instruct is stored: 15 files and a ``model.safetensors.index.json`` naming
the file of every tensor. The Thinker's text model fills the first eleven shards, as its
60 GB fill most of the released ones.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from omnispeech.checkpoint import CheckpointFolder, HubSnapshot
from omnispeech.encoder import AudioEncoder
from omnispeech.errors import CheckpointError
from omnispeech.talker import CodePredictor, GenerationConfig, Talker
from omnispeech.vocoder import Code2Wav
from tests.conftest import redraw
from tests.tiny import TINY_OMNI_CHAT, tiny_omni_model

SHARDS = 15
THINKER_SHARDS = 11  # shards 1..11 hold only the Thinker's text model and vision tower


def _shard_of(key: str, order: int) -> int:
    """1-based shard of a tensor: the layout of the released index, by component."""
    if key.startswith("thinker.audio_tower."):
        return 12
    if key.startswith("talker.code_predictor."):
        return 14
    if key.startswith("talker."):
        return 13
    if key.startswith("code2wav."):
        return 15
    return 1 + order % THINKER_SHARDS


def reshard(source: Path, target: Path) -> dict[str, str]:
    """Copy a single-file folder into 15 shards with an index; returns the weight map."""
    target.mkdir(parents=True, exist_ok=True)
    with safe_open(source / "model.safetensors", "pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    names = lambda i: f"model-{i:05d}-of-{SHARDS:05d}.safetensors"  # noqa: E731
    groups: dict[int, dict[str, torch.Tensor]] = {i: {} for i in range(1, SHARDS + 1)}
    for order, key in enumerate(sorted(tensors)):
        groups[_shard_of(key, order)][key] = tensors[key].contiguous()
    weight_map = {}
    for i, part in groups.items():
        save_file(part, str(target / names(i)), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, names(i)))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (target / "model.safetensors.index.json").write_text(json.dumps(index))
    for extra in ("config.json", "generation_config.json"):
        shutil.copy(source / extra, target / extra)
    return weight_map


@pytest.fixture(scope="module")
def omni_folders(tmp_path_factory):
    """(full single-file folder, 15-shard folder with only the speech shards, weight map)."""
    ref = tiny_omni_model(audio_output=True)
    redraw(ref, std=0.2, seed=3)
    full = tmp_path_factory.mktemp("omni_full")
    ref.save_pretrained(full)
    speech = tmp_path_factory.mktemp("omni_speech") / "Qwen3-Omni"
    weight_map = reshard(full, speech)
    for i in range(1, THINKER_SHARDS + 1):
        (speech / f"model-{i:05d}-of-{SHARDS:05d}.safetensors").unlink()
    return full, speech, weight_map


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_speech_side_loads_without_the_thinker_shards(omni_folders):
    full, speech, _ = omni_folders
    assert len(list(speech.glob("*.safetensors"))) == SHARDS - THINKER_SHARDS
    assert _same(AudioEncoder.from_pretrained(speech), AudioEncoder.from_pretrained(full))
    assert _same(Talker.from_pretrained(speech), Talker.from_pretrained(full))
    assert _same(CodePredictor.from_pretrained(speech), CodePredictor.from_pretrained(full))
    assert _same(Code2Wav.from_pretrained(speech), Code2Wav.from_pretrained(full))


def test_released_config_fields_are_read(omni_folders):
    _, speech, _ = omni_folders
    spec = Talker.from_pretrained(speech).spec
    assert spec.accept_hidden_layer == 1  # the tiny model's value, not the class default 18
    assert spec.tokens.tts_pad == TINY_OMNI_CHAT["tts_pad_token_id"]
    assert spec.tokens.tts_eos == TINY_OMNI_CHAT["tts_eos_token_id"]
    assert spec.tokens.im_start == TINY_OMNI_CHAT["im_start_token_id"]
    gen = GenerationConfig.qwen3_omni({"talker_top_k": 7})
    assert gen.talker.top_k == 7 and gen.talker.temperature == 0.9
    assert gen.talker.repetition_penalty == 1.05 and gen.min_frames == 0
    assert (gen.code_predictor.top_k, gen.code_predictor.top_p) == (50, 0.8)
    assert not GenerationConfig.qwen3_omni({"talker_do_sample": False}).code_predictor.do_sample


def test_a_missing_shard_that_is_needed_is_named(omni_folders, tmp_path):
    _, speech, _ = omni_folders
    partial = tmp_path / "partial"
    shutil.copytree(speech, partial)
    gone = f"model-00013-of-{SHARDS:05d}.safetensors"
    (partial / gone).unlink()
    AudioEncoder.from_pretrained(partial)  # its shard is there: unaffected
    with pytest.raises(CheckpointError, match=f"talker.*missing from the folder.*{gone}"):
        Talker.from_pretrained(partial)


class FakeHub:
    """``huggingface_hub.snapshot_download`` over a local "remote" folder, recording what was
    asked, and laying files out as the hub cache does (``models--ORG--NAME/snapshots/REV``)."""

    def __init__(self, remote: Path, cache: Path) -> None:
        self.remote, self.cache = remote, cache
        self.fetched: list[str] = []

    def __call__(self, repo_id, allow_patterns=(), revision=None, cache_dir=None, **_):
        root = Path(cache_dir or self.cache)
        snap = root / f"models--{repo_id.replace('/', '--')}" / "snapshots" / (revision or "rev1")
        for file in sorted(self.remote.rglob("*")):
            rel = file.relative_to(self.remote).as_posix()
            if file.is_file() and any(fnmatch.fnmatch(rel, p) for p in allow_patterns):
                (snap / rel).parent.mkdir(parents=True, exist_ok=True)
                if not (snap / rel).exists():
                    shutil.copy(file, snap / rel)
                    self.fetched.append(rel)
        return str(snap)


@pytest.fixture
def hub(omni_folders, tmp_path, monkeypatch):
    import huggingface_hub

    full, _, _ = omni_folders
    remote = tmp_path / "remote"
    reshard(full, remote)
    fake = FakeHub(remote, tmp_path / "cache")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    return fake


def test_hub_download_fetches_only_the_component_shards(hub, omni_folders):
    _, _, weight_map = omni_folders
    talker = Talker.from_pretrained("Qwen/Tiny-Omni")
    weights = {f for f in hub.fetched if f.endswith(".safetensors")}
    need = {f for k, f in weight_map.items() if k.startswith("talker.")}
    assert weights == need == {f"model-{i:05d}-of-{SHARDS:05d}.safetensors" for i in (13, 14)}
    assert "model.safetensors.index.json" in hub.fetched and "config.json" in hub.fetched
    assert talker.spec.family == "qwen3_omni"
    before = set(hub.fetched)
    AudioEncoder.from_pretrained("Qwen/Tiny-Omni")
    assert set(hub.fetched) - before == {f"model-00012-of-{SHARDS:05d}.safetensors"}


def test_hub_snapshot_is_recognised_from_its_path(tmp_path):
    snap = tmp_path / "models--Qwen--Qwen3-Omni-30B-A3B-Instruct" / "snapshots" / "abc" / "sub"
    found = HubSnapshot.of(snap)
    assert found == HubSnapshot("Qwen/Qwen3-Omni-30B-A3B-Instruct", "abc", tmp_path, "sub")
    assert HubSnapshot.of(tmp_path / "plain" / "folder") is None


def test_local_folder_shard_listing(omni_folders):
    _, speech, weight_map = omni_folders
    folder = CheckpointFolder(speech)
    assert folder.shards("code2wav.") == [f"model-00015-of-{SHARDS:05d}.safetensors"]
    assert len(folder.keys()) == len(weight_map)
