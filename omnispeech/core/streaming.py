"""The one streaming protocol of omnispeech.

Every stateful module derives from :class:`StreamingModule`. It defines a typed state dataclass
built by ``_init_streaming_state(batch_size)``; ``with model.streaming(batch_size):`` creates the
state of every streaming descendant at once and removes it on exit. Inside the context each call
continues where the previous one stopped; outside it the same ``forward`` runs on a fresh state,
so there is never a separate offline branch that could drift from the streaming one.

Snapshots (``get_streaming_state`` / ``set_streaming_state``) copy the whole tree's state, so a
caller can roll back after a speculative step.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import torch
from torch import nn

S = TypeVar("S")


@dataclasses.dataclass
class StreamingState:
    """Base of every module's streaming state. ``batch_size`` streams advance in lockstep."""

    batch_size: int


class StreamingModule(nn.Module, Generic[S]):
    """An ``nn.Module`` that can keep state between calls.

    Subclasses implement ``_init_streaming_state(batch_size) -> S``. While streaming,
    ``self.streaming_state`` holds the state; otherwise it is ``None``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._streaming_state: S | None = None

    # -- to implement -----------------------------------------------------------------------
    def _init_streaming_state(self, batch_size: int) -> S:
        raise NotImplementedError

    # -- protocol ---------------------------------------------------------------------------
    @property
    def streaming_state(self) -> S | None:
        """The live state, or ``None`` outside a ``streaming()`` context."""
        return self._streaming_state

    @property
    def is_streaming(self) -> bool:
        return self._streaming_state is not None

    def _streaming_modules(self) -> Iterator[tuple[str, StreamingModule[Any]]]:
        for name, module in self.named_modules():
            if isinstance(module, StreamingModule):
                yield name, module

    @contextmanager
    def streaming(self, batch_size: int = 1) -> Iterator[None]:
        """Enter streaming mode for ``batch_size`` streams; state is dropped on exit."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        modules = list(self._streaming_modules())
        if any(m.is_streaming for _, m in modules):
            raise RuntimeError("already streaming: nested streaming() contexts are not allowed")
        try:
            for _, module in modules:
                module._streaming_state = module._init_streaming_state(batch_size)
            yield
        finally:
            for _, module in modules:
                module._streaming_state = None

    def reset_streaming(self) -> None:
        """Restart every stream from scratch without leaving the context."""
        for _, module in self._streaming_modules():
            if module._streaming_state is None:
                raise RuntimeError("reset_streaming() called outside streaming()")
            module._streaming_state = module._init_streaming_state(
                module._streaming_state.batch_size  # type: ignore[attr-defined]
            )

    def get_streaming_state(self) -> dict[str, Any]:
        """A deep copy of the state of every streaming module, keyed by module name."""
        out = {}
        for name, module in self._streaming_modules():
            if module._streaming_state is None:
                raise RuntimeError("get_streaming_state() called outside streaming()")
            out[name] = _clone_state(module._streaming_state)
        return out

    def set_streaming_state(self, snapshot: dict[str, Any]) -> None:
        """Restore a snapshot taken by :meth:`get_streaming_state` (copied, so reusable)."""
        modules = dict(self._streaming_modules())
        if set(snapshot) != set(modules):
            raise ValueError("snapshot does not match this module tree")
        for name, module in modules.items():
            module._streaming_state = _clone_state(snapshot[name])


def _clone_state(state: Any) -> Any:
    """Deep-copy a state, cloning tensors (``copy.deepcopy`` alone shares no storage either,
    but being explicit keeps tensors on their device and avoids autograd history)."""
    memo: dict[int, Any] = {}

    def clone(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().clone()
        return copy.deepcopy(value, memo)

    if dataclasses.is_dataclass(state):
        return dataclasses.replace(
            state, **{f.name: clone(getattr(state, f.name)) for f in dataclasses.fields(state)}
        )
    return clone(state)
