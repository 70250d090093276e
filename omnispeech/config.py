"""Frozen configuration dataclasses with strict dict and JSON round trips.

Each component owns a frozen dataclass derived from :class:`FrozenConfig`. ``from_dict`` refuses
unknown keys (a typo in a config file must not be ignored silently); foreign config layouts (the
released Qwen ``config.json`` files) are translated by the component's own loader, in one place.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from omnispeech.errors import ConfigError

C = TypeVar("C", bound="FrozenConfig")


@dataclasses.dataclass(frozen=True)
class FrozenConfig:
    """Base of every omnispeech config: immutable, strict, JSON-serialisable."""

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build the config from a plain dict; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown config keys {unknown}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            # Lists from JSON become tuples so that the frozen config stays hashable.
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (tuples as lists), the inverse of :meth:`from_dict`."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self, path: str | Path) -> None:
        """Write the config as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validation runs again)."""
        return dataclasses.replace(self, **changes)
