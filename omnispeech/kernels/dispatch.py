"""Which implementation runs a fused op: the PyTorch reference, Numba (CPU) or Triton (GPU).

The setting, from strongest to weakest:

1. ``with use_backend(name):`` for the code inside the block (per thread and per asyncio task,
   as it lives in a ``ContextVar``);
2. the environment variable ``OMNISPEECH_KERNELS``, read at every call;
3. ``"auto"``.

Names: ``"auto"`` takes Numba for CPU tensors and Triton for CUDA tensors, and the reference
when that backend cannot be imported (with one warning). ``"numba"`` or ``"triton"`` allows
only that backend, so a benchmark measures what it asks for: it raises
:class:`~omnispeech.errors.ConfigError` when that backend cannot be imported, and tensors on the
other device run the reference. ``"reference"`` never leaves PyTorch.

Whatever the setting, a call the accelerated kernels cannot serve runs the reference: one that
needs autograd (the kernels have no backward), a dtype or a layout they do not take, a device
with no kernel, or a process forked from one that had imported the Numba kernels (GNU OpenMP
does not survive ``fork``). Numba and Triton are imported on the first call that could use them,
never at ``import omnispeech``; a failure while importing (or compiling) a backend counts as
"unavailable". Failures inside a kernel launch are not caught: they are bugs, not fallbacks.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import warnings
from collections.abc import Iterator
from types import ModuleType

import torch

from omnispeech.errors import ConfigError

ENV_VAR = "OMNISPEECH_KERNELS"
BACKENDS = ("auto", "reference", "numba", "triton")
# The public ops, in the order backend_info lists them.
OPS = ("codebook_embed", "snake_beta", "residual_add", "tap_matmul", "linear")
# Ops with no GPU kernel: on CUDA tensors they run the reference (torch's GEMMs are the fast
# path there).
CPU_ONLY = ("tap_matmul", "linear")

# Accelerated backend per device type, and the module that holds its kernels.
_DEVICE_BACKEND = {"cpu": "numba", "cuda": "triton"}
_MODULES = {
    "numba": "omnispeech.kernels.numba_cpu",
    "triton": "omnispeech.kernels.triton_gpu",
}

_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "omnispeech_kernels_backend", default=None
)
# Import outcome per backend: the module, or the reason it failed. Filled on first use only.
_loaded: dict[str, ModuleType | str] = {}
# Backends whose unavailability has been reported (once per process is enough).
_warned: dict[str, bool] = {}


def _check_name(name: str, source: str) -> str:
    if name not in BACKENDS:
        raise ConfigError(
            f"{source}: unknown kernel backend {name!r}; use one of {', '.join(BACKENDS)}"
        )
    return name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the fused ops of the enclosed code on ``name`` (see the module docstring).

    Args:
        name: one of ``"auto"``, ``"reference"``, ``"numba"``, ``"triton"``.

    Raises:
        ConfigError: for an unknown name.
    """
    token = _forced.set(_check_name(name, "use_backend"))
    try:
        yield
    finally:
        _forced.reset(token)


def requested_backend() -> str:
    """The backend name in force here: ``use_backend``, else ``$OMNISPEECH_KERNELS``, else auto."""
    name = _forced.get()
    if name is not None:
        return name
    value = os.environ.get(ENV_VAR, "").strip().lower()
    return _check_name(value, ENV_VAR) if value else "auto"


def _import(module_name: str) -> ModuleType:
    """Import one backend module (a seam that tests replace to simulate a missing backend)."""
    return importlib.import_module(module_name)


def _load(name: str) -> ModuleType | str:
    """The backend's module, importing it on first use, or why it cannot be imported."""
    if name not in _loaded:
        try:
            _loaded[name] = _import(_MODULES[name])
        # Importing the Numba backend also compiles its kernels, so any failure, not only
        # ImportError, means the backend cannot serve this process: keep the reason, which
        # the caller reports once, or raises when the backend was asked for by name.
        except Exception as err:
            _loaded[name] = f"{type(err).__name__}: {err}"
    return _loaded[name]


def accelerated(tensors: tuple[torch.Tensor | None, ...], supported: bool) -> ModuleType | None:
    """The kernel module that should run this call, or None for the reference.

    Args:
        tensors: every tensor argument of the call (None for absent optional ones); the first
            one's device decides the backend.
        supported: whether the op can run these tensors' dtypes and layouts on an accelerated
            path at all (checked by the op, which knows its own limits).

    Raises:
        ConfigError: the requested backend is explicitly ``"numba"`` or ``"triton"`` and
            cannot be imported.
    """
    requested = requested_backend()
    if requested == "reference" or not supported:
        return None
    present = [t for t in tensors if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in present):
        return None
    name = _DEVICE_BACKEND.get(present[0].device.type)
    if name is None or requested not in ("auto", name):
        return None
    module = _load(name)
    if isinstance(module, ModuleType):
        # A backend can be imported yet unusable in this process (Numba in a forked child).
        return module if module.usable() else None
    if requested == name:
        raise ConfigError(f"kernel backend {name!r} was requested but is unavailable ({module})")
    if not _warned.get(name):
        _warned[name] = True
        warnings.warn(
            f"omnispeech.kernels: {name} is unavailable ({module}); using the PyTorch reference",
            RuntimeWarning,
            stacklevel=3,
        )
    return None


def backend_info() -> dict[str, dict[str, str]]:
    """Which path each op takes per device under the current setting.

    Describes float32 inputs that need no gradient (other calls may run the reference, see the
    module docstring). Imports the CPU backend to find out whether it works; probes Triton only
    when a CUDA device is present.

    Returns:
        ``{op: {"cpu": path, "cuda": path}}`` with path ``"numba"``, ``"triton"``,
        ``"reference"``, or ``"unavailable: <reason>"`` when a backend is requested explicitly
        but cannot be imported.
    """
    requested = requested_backend()
    paths: dict[str, str] = {}
    for device, name in _DEVICE_BACKEND.items():
        if requested not in ("auto", name):
            paths[device] = "reference"
        elif device == "cuda" and not torch.cuda.is_available():
            paths[device] = "reference"
        else:
            module = _load(name)
            if isinstance(module, ModuleType):
                paths[device] = name if module.usable() else "reference"
            else:
                paths[device] = f"unavailable: {module}" if requested == name else "reference"
    return {op: {**paths, "cuda": "reference"} if op in CPU_ONLY else dict(paths) for op in OPS}
