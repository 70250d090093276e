"""Checkpoint folders: ``config.json`` + safetensors (one file, or shards with an index).

Tensors are read lazily by key prefix, so loading the audio tower of a 30B Omni checkpoint reads
only the audio tower's bytes. Modules are built on the meta device (no memory, no random init)
and filled with ``load_state_dict(assign=True)``; the key check is strict and names what is
missing or unexpected. Only safetensors are read: no pickle anywhere.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from omnispeech.errors import CheckpointError

M = TypeVar("M", bound=nn.Module)

_INDEX = "model.safetensors.index.json"


class CheckpointFolder:
    """A local checkpoint folder, opened for lazy reads.

    Args:
        path: folder holding ``config.json`` and ``*.safetensors`` (sharded with
            ``model.safetensors.index.json`` or not).

    Raises:
        CheckpointError: the folder, its config or its weights are missing or unreadable.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise CheckpointError(f"{self.path}: no such checkpoint folder")
        config_file = self.path / "config.json"
        if not config_file.is_file():
            raise CheckpointError(f"{self.path}: not a checkpoint folder (no config.json)")
        try:
            self.config: dict[str, Any] = json.loads(config_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{config_file}: unreadable config.json ({exc})") from exc
        self._hub = HubSnapshot.of(self.path)
        self._key_to_file = self._index()

    def _index(self) -> dict[str, Path]:
        index = self.path / _INDEX
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (OSError, json.JSONDecodeError, KeyError) as exc:
                raise CheckpointError(f"{index}: unreadable shard index ({exc})") from exc
            # Shards are checked when read, not here: a folder may hold only the shards of the
            # components it is used for (the speech side of a 70 GB Omni checkpoint).
            return {k: self.path / f for k, f in weight_map.items()}
        files = sorted(self.path.glob("*.safetensors"))
        if not files and self._hub is not None:
            self._hub.fetch(["*.safetensors"])
            files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"{self.path}: no *.safetensors weights in the folder")
        out: dict[str, Path] = {}
        for file in files:
            try:
                with safe_open(file, framework="pt") as handle:
                    out.update(dict.fromkeys(handle.keys(), file))
            except Exception as exc:  # safetensors raises several error types for bad headers
                raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from exc
        return out

    def keys(self, prefix: str = "") -> list[str]:
        """All tensor names starting with ``prefix``, sorted."""
        return sorted(k for k in self._key_to_file if k.startswith(prefix))

    def has_prefix(self, prefix: str) -> bool:
        """Whether any tensor name starts with ``prefix``."""
        return any(k.startswith(prefix) for k in self._key_to_file)

    def shards(self, prefix: str) -> list[str]:
        """Names of the weight files holding the tensors under ``prefix``, sorted."""
        return sorted({self._key_to_file[k].name for k in self.keys(prefix)})

    def _ensure_shards(self, prefix: str) -> None:
        """Make sure the shards holding ``prefix`` are present: fetched from the hub when the
        folder is a hub snapshot, otherwise named in the error."""
        missing = [name for name in self.shards(prefix) if not (self.path / name).is_file()]
        if missing and self._hub is not None:
            self._hub.fetch(missing)
            missing = [name for name in missing if not (self.path / name).is_file()]
        if missing:
            raise CheckpointError(
                f"{self.path}: the {prefix}* tensors are in shards missing from the folder: "
                f"{_clip(missing)}; copy those files there (no other shard is needed)"
            )

    def read(self, prefix: str, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """Read every tensor under ``prefix``, with the prefix stripped from the names.

        Only the files and tensors under the prefix are touched; a shard that holds none of
        them need not be in the folder.

        Raises:
            CheckpointError: a shard holding some of the tensors is missing or unreadable.
        """
        self._ensure_shards(prefix)
        by_file: dict[Path, list[str]] = {}
        for key in self.keys(prefix):
            by_file.setdefault(self._key_to_file[key], []).append(key)
        out: dict[str, torch.Tensor] = {}
        for file, names in by_file.items():
            try:
                with safe_open(file, framework="pt") as handle:
                    for name in names:
                        tensor = handle.get_tensor(name)
                        if dtype is not None and tensor.is_floating_point():
                            tensor = tensor.to(dtype)
                        out[name[len(prefix) :]] = tensor
            except Exception as exc:
                raise CheckpointError(f"{file}: failed to read tensors ({exc})") from exc
        return out


def build_on_meta(factory: Callable[[], M]) -> M:
    """Construct a module without allocating or initialising its parameters.

    Buffers created with an explicit ``device="cpu"`` (derived tables such as RoPE frequencies)
    stay real; everything else lives on the meta device until :func:`load_state` assigns it.
    """
    with torch.device("meta"):
        return factory()


def load_state(
    module: nn.Module, state: dict[str, torch.Tensor], source: str, ignore: Iterable[str] = ()
) -> None:
    """Strictly load ``state`` into ``module`` (built on meta or not), by assignment.

    Args:
        module: the target module.
        state: tensors by name (the module's own names).
        source: what the tensors came from, for the error message.
        ignore: names that may be present in ``state`` without a matching parameter.

    Raises:
        CheckpointError: naming missing keys, unexpected keys and shape mismatches.
    """
    expected = {k: v for k, v in module.state_dict().items()}
    ignored = set(ignore)
    state = {k: v for k, v in state.items() if k not in ignored}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {_clip(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_clip(unexpected)}")
        if wrong:
            parts.append(f"shape mismatches {_clip(wrong)}")
        raise CheckpointError(f"{source}: does not match the model: " + "; ".join(parts))
    module.load_state_dict(state, strict=True, assign=True)


def load_module(  # noqa: PLR0913 - where from, what to build, and where to put it
    folder: CheckpointFolder,
    factory: Callable[[], M],
    prefix: str,
    dtype: torch.dtype,
    device: str | torch.device,
    what: str,
) -> M:
    """Build ``factory()`` on the meta device, fill it strictly with the tensors under
    ``prefix`` (read lazily, cast to ``dtype``) and return it on ``device`` in eval mode.

    Raises:
        CheckpointError: no tensor starts with ``prefix``, or the keys do not match.
    """
    if not folder.has_prefix(prefix):
        raise CheckpointError(
            f"{folder.path}: no {prefix}* tensors in the weights, though the config describes "
            f"a {what} (an incomplete download, or a model without one?)"
        )
    module = build_on_meta(factory)
    load_state(module, folder.read(prefix, dtype), f"{folder.path} ({what})")
    return module.to(device=device, dtype=dtype).eval()


def _clip(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return f"[{shown}]{more}"


def save_folder(path: str | Path, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Write ``config.json`` and ``model.safetensors`` (contiguous CPU copies) into ``path``."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(
        {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )


# Files fetched when a hub name is resolved: configs, tokenizers, indexes. Weights are fetched
# later, shard by shard, by the component that reads them (see HubSnapshot).
_HUB_LIGHT_FILES = ["*.json", "*.txt"]


@dataclasses.dataclass(frozen=True)
class HubSnapshot:
    """A folder inside a Hugging Face hub cache snapshot, from which missing files can be
    fetched by name: ``<cache>/models--ORG--NAME/snapshots/REVISION[/SUBFOLDER]``.

    Everything is read from the path itself (no registry of downloads), so a folder resolved
    in another process, or given as a path into the cache, fetches its missing shards too.
    """

    repo_id: str
    revision: str
    cache_dir: Path
    subfolder: str  # "" or e.g. "speech_tokenizer"

    @classmethod
    def of(cls, path: Path) -> HubSnapshot | None:
        """The snapshot ``path`` lies in, or None for an ordinary folder."""
        parts = path.resolve().parts
        for i in range(len(parts) - 2, 0, -1):
            if parts[i] == "snapshots" and parts[i - 1].startswith("models--"):
                repo = parts[i - 1][len("models--") :].replace("--", "/")
                return cls(repo, parts[i + 1], Path(*parts[: i - 1]), "/".join(parts[i + 2 :]))
        return None

    def fetch(self, names: list[str]) -> None:
        """Download ``names`` (file names or patterns relative to this folder) at this revision.

        Raises:
            CheckpointError: huggingface_hub is not installed, or the download failed.
        """
        patterns = [f"{self.subfolder}/{n}" if self.subfolder else n for n in names]
        _hub_download(self.repo_id, patterns, revision=self.revision, cache_dir=self.cache_dir)


def _hub_download(
    repo_id: str, patterns: list[str], revision: str | None = None, cache_dir: Path | None = None
) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            f"{repo_id}: no such folder; to download it by name, install the hub extra "
            "(pip install 'omnispeech[hub]'), or pass a local checkpoint folder"
        ) from None
    kwargs: dict[str, Any] = {"allow_patterns": patterns}
    if revision is not None:
        kwargs["revision"] = revision
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    try:
        return Path(snapshot_download(repo_id, **kwargs))
    except Exception as exc:  # network and hub errors come in many types
        # Hub errors span several lines (the cause, then advice); the first says what failed.
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise CheckpointError(
            f"{repo_id}: could not download it ({exc.__class__.__name__}: {first}); without "
            "network, pass a local checkpoint folder"
        ) from None


def resolve_folder(name_or_path: str | Path) -> Path:
    """A local folder as is; the name of a bundled model (:mod:`omnispeech.bundled`); otherwise
    a hub repository name, downloaded when the optional ``huggingface_hub`` is installed and
    the network allows (never needed by omnispeech itself).

    A hub download fetches only the configs, tokenizer files and shard index here; each
    component then fetches the weight files that hold its own tensors when it reads them
    (:class:`HubSnapshot`), so loading the talker of a 70 GB Omni checkpoint downloads the
    talker's shards only.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    from omnispeech.bundled import bundled_folder

    bundled = bundled_folder(str(name_or_path))
    if bundled is not None:  # a model shipped inside the package, by name
        return bundled
    text = str(name_or_path)
    if path.exists() or text.count("/") != 1 or text.startswith((".", "/")):
        raise CheckpointError(f"{text}: no such checkpoint folder")
    return _hub_download(text, _HUB_LIGHT_FILES)
