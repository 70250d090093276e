"""The models an app serves, and replicas of them for requests that run at the same time.

A TTS stream or a live ASR stream keeps its state on the modules it runs through (the
vocoder's and the encoder's streaming state), so two requests must never share one module
object at once. Loading the weights once per worker would multiply memory; instead each
worker gets a *replica*: a deep copy of the pipeline whose parameters are the original tensors
(shared, read-only during inference) while every module object, buffer and streaming state is
its own. :class:`ReplicaPool` lends replicas to threads, one request at a time each.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import queue
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from omnispeech.errors import CheckpointError, DependencyError
from omnispeech.registry import find_model, missing_message

if TYPE_CHECKING:
    from omnispeech.pipelines import ASR, TTS


@dataclasses.dataclass
class Models:
    """What one worker runs: a TTS pipeline, an ASR pipeline, or both.

    Attributes:
        tts: text to speech (Qwen3-TTS layout), or None when the app has none.
        asr: speech recognition (Qwen3-ASR), or None.
        tts_name: the folder or name the TTS model was loaded from (for listings).
        asr_name: likewise for ASR.
    """

    tts: TTS | None = None
    asr: ASR | None = None
    tts_name: str | None = None
    asr_name: str | None = None

    def describe(self) -> str:
        """One line naming what is loaded, for the console."""
        parts = [f"TTS {self.tts_name}" if self.tts else "no TTS"]
        parts.append(f"ASR {self.asr_name}" if self.asr else "no ASR")
        return ", ".join(parts)


def load_models(
    tts_model: str | None, asr_model: str | None, device: str = "cpu", int8: bool = False
) -> tuple[Models, list[str]]:
    """Load the TTS and ASR models named, or found by :func:`omnispeech.registry.find_model`.

    Args:
        tts_model: a TTS folder, or None to use ``$OMNISPEECH_TTS_MODEL`` / the bundled one.
        asr_model: an ASR folder, or None likewise.
        device: torch device for both.
        int8: int8 weight-only talker (CPU speed-up, see ``TTS.from_pretrained``).

    Returns:
        the models, and one note per kind that is not available (what to pass to get it).

    Raises:
        CheckpointError: neither kind is available, or a named folder cannot be loaded.
    """
    from omnispeech.pipelines import ASR, TTS

    tts_name, asr_name = find_model("tts", tts_model), find_model("asr", asr_model)
    notes = []
    if tts_name is None:
        notes.append(missing_message("tts", "--tts-model"))
    if asr_name is None:
        notes.append(missing_message("asr", "--asr-model"))
    if tts_name is None and asr_name is None:
        raise CheckpointError(
            "no model to serve: pass --tts-model FOLDER and/or --asr-model FOLDER "
            "(or set $OMNISPEECH_TTS_MODEL / $OMNISPEECH_ASR_MODEL)"
        )
    models = Models(tts_name=tts_name, asr_name=asr_name)
    if tts_name is not None:
        models.tts = TTS.from_pretrained(tts_name, device=device, quantize="int8" if int8 else None)
    if asr_name is not None:
        models.asr = ASR.from_pretrained(asr_name, device=device)
    return models, notes


def _modules(obj: Any, depth: int = 2) -> Iterator[Any]:
    """The ``nn.Module`` objects held by ``obj`` (itself, or its attributes two levels down)."""
    from torch import nn

    if isinstance(obj, nn.Module):
        yield obj
    elif depth and hasattr(obj, "__dict__"):
        for value in vars(obj).values():
            yield from _modules(value, depth - 1)


def replicate(models: Models, count: int) -> list[Models]:
    """``count`` workers' models: the original first, then copies sharing its parameters.

    Parameters are shared by identity (``copy.deepcopy`` with a memo that maps each parameter
    to itself), so a replica costs its buffers and module objects, not its weights.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    memo = {id(p): p for m in _modules(models) for p in m.parameters()}
    out = [models]
    for _ in range(count - 1):
        out.append(copy.deepcopy(models, dict(memo)))
    return out


class ReplicaPool:
    """Replicas lent to threads one at a time (the demo's Gradio workers).

    Args:
        replicas: from :func:`replicate`.
    """

    def __init__(self, replicas: list[Models]) -> None:
        self.size = len(replicas)
        self._free: queue.Queue[Models] = queue.Queue()
        for r in replicas:
            self._free.put(r)

    @property
    def busy(self) -> int:
        """Replicas lent out now."""
        return self.size - self._free.qsize()

    def acquire(self, timeout: float | None = None) -> Models:
        """Take a replica, waiting up to ``timeout`` seconds (None: as long as it takes).

        Raises:
            TimeoutError: none was free in time.
        """
        try:
            return self._free.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("every worker is busy; try again in a moment") from None

    def release(self, replica: Models) -> None:
        """Give a replica back."""
        self._free.put(replica)

    @contextlib.contextmanager
    def borrow(self, timeout: float | None = None) -> Iterator[Models]:
        """``with pool.borrow() as models:`` exclusive use of one replica."""
        replica = self.acquire(timeout)
        try:
            yield replica
        finally:
            self.release(replica)


def require_extra(module: str, extra: str) -> None:
    """Raise a :class:`DependencyError` naming the extra to install when ``module`` is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise DependencyError(
            f"this needs the '{extra}' extra: pip install 'omnispeech[{extra}]' ({module} is "
            "not installed)"
        )
