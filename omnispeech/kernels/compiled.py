"""Training-time ops fused by ``torch.compile``, opt in (``set_compiled_training``).

Training needs gradients, which the Numba and Triton kernels do not give, so a training step
runs the differentiable references: SnakeBeta alone is five torch passes forward and about ten
backward over every decoder activation. Measured on 2 CPU cores (AMD EPYC Zen 3): SnakeBeta's
forward and backward at [8, 128, 12000] take 592 ms eager and 135 ms compiled by inductor; a
step of ``recipes/codec/bundled25.json`` 1.79 s eager and 1.61 s with it (10 % of the step).

Compiling costs seconds per new shape (about 30 s for the first, which starts inductor), so
it is for long runs only: ``run.compile`` of a codec training config turns it on. If a
compile fails (no C++ compiler, say), the op warns once and stays eager.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import torch

from omnispeech.kernels import reference

_state = {"enabled": False, "broken": False}
_compiled: dict[str, Callable[..., torch.Tensor]] = {}


def set_compiled_training(enabled: bool) -> None:
    """Turn the compiled training ops on or off for this process."""
    _state["enabled"] = enabled


@contextlib.contextmanager
def compiled_training(enabled: bool = True) -> Iterator[None]:
    """:func:`set_compiled_training` for the duration of a block (restored after)."""
    before = _state["enabled"]
    _state["enabled"] = enabled
    try:
        yield
    finally:
        _state["enabled"] = before


def _snake(x: torch.Tensor, log_alpha: torch.Tensor, log_beta: torch.Tensor) -> torch.Tensor:
    return reference.snake_beta(x, log_alpha, log_beta, None, None)


def snake_beta(
    x: torch.Tensor, log_alpha: torch.Tensor, log_beta: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor | None:
    """The reference SnakeBeta ``[B, C, T]`` (with ``bias`` added first) compiled, or None
    when compiled training ops are off or unavailable (the caller then runs the reference)."""
    if not _state["enabled"] or _state["broken"]:
        return None
    if "snake" not in _compiled:
        _compiled["snake"] = torch.compile(_snake, dynamic=False)
    if bias is not None:
        x = x + bias[:, None]
    try:
        return _compiled["snake"](x, log_alpha, log_beta)
    except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
        _state["broken"] = True
        warnings.warn(
            f"torch.compile failed ({type(err).__name__}: {err}); training runs the eager ops",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
