"""Per-frame streaming on a CUDA GPU with the step captured once in a CUDA graph.

A one-frame step of Code2Wav launches a few hundred small kernels; on a GPU their launch cost,
not their arithmetic, sets the latency. A CUDA graph replays the whole step as one launch.

Capturing is possible because every streaming state of the vocoder is updated in place (its
buffers keep their addresses from step to step) and, once the first frame has been decoded
eagerly (the omni flavor trims its first samples there, a data-dependent step), a step has no
host synchronisation and fixed shapes.
"""

from __future__ import annotations

import dataclasses
from types import TracebackType

import torch

from omnispeech.core.streaming import StreamingModule
from omnispeech.vocoder.model import Code2Wav

# Eager steps run before capture: kernels compile (Triton) and libraries pick algorithms.
WARMUP_STEPS = 2


class GraphStreamer:
    """Stream ``batch_size`` streams, ``frames`` frames per push, through a captured step.

    Usage::

        with GraphStreamer(vocoder, batch_size=8) as stream:
            for codes in frames:            # [8, K, 1] on the GPU
                wav = stream.push(codes)    # [8, 1, 1920] (first push: 1920 - 555 for omni)

    Every stream advances by ``frames`` per push (ragged batches: use ``Code2Wav.push``). The
    output equals ``Code2Wav.push`` and hence the offline decode.

    Args:
        vocoder: a model on a CUDA device.
        batch_size: streams decoded together.
        frames: frames per push (1 for the lowest latency).
    """

    def __init__(self, vocoder: Code2Wav, batch_size: int = 1, frames: int = 1) -> None:
        device = vocoder.pre_transformer.norm.weight.device
        if device.type != "cuda":
            raise RuntimeError("GraphStreamer needs a vocoder on a CUDA device")
        self.vocoder = vocoder
        self.batch_size = batch_size
        self.frames = frames
        self._input = torch.zeros(
            batch_size, vocoder.cfg.num_quantizers, frames, dtype=torch.long, device=device
        )
        self._output: torch.Tensor | None = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._context = None

    def __enter__(self) -> GraphStreamer:
        self._context = self.vocoder.streaming(self.batch_size)
        self._context.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._graph = None
        self._output = None
        if self._context is not None:
            self._context.__exit__(kind, exc, tb)
            self._context = None

    @torch.inference_mode()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode the next ``[B, K, frames]`` codes -> the final samples ``[B, 1, S]``."""
        if self._context is None:
            raise RuntimeError("use `with GraphStreamer(...) as stream:`")
        if tuple(codes.shape) != tuple(self._input.shape):
            raise ValueError(f"expected codes of shape {tuple(self._input.shape)}")
        if self._graph is None:
            if _still_trimming(self.vocoder):
                return self.vocoder.push(codes).wav  # the data-dependent first step, eagerly
            self._capture()
        assert self._graph is not None and self._output is not None
        self._input.copy_(codes)
        self._graph.replay()
        return self._output.clone()

    def _capture(self) -> None:
        saved = _state_tensors(self.vocoder)
        backup = [t.clone() for t in saved]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.vocoder._run(self._input, None)
        torch.cuda.current_stream().wait_stream(side)
        # Warm-up advanced the streams; put them back exactly (same buffers, old contents).
        for live, old in zip(saved, backup, strict=True):
            live.copy_(old)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._output = self.vocoder._run(self._input, None).wav
        self._graph = graph


def _state_tensors(model: StreamingModule) -> list[torch.Tensor]:
    """Every tensor of every streaming state in ``model``'s tree."""
    out = []
    for _, module in model._streaming_modules():
        state = module.streaming_state
        for field in dataclasses.fields(state):
            value = getattr(state, field.name)
            if isinstance(value, torch.Tensor):
                out.append(value)
    return out


def _still_trimming(model: StreamingModule) -> bool:
    return any(getattr(m.streaming_state, "trimming", False) for _, m in model._streaming_modules())
