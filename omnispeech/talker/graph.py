"""The talker's frame step replayed as CUDA graphs (GPU only).

A frame is one talker position plus 15 code-predictor steps: on a GPU, thousands of small
kernel launches whose launch cost, not their arithmetic, sets the latency. :class:`GraphSession`
captures the two halves of :class:`~omnispeech.talker.static.StaticSession` (choose the frame;
feed it back) once per utterance and replays each as a single launch. Replays compute exactly
what the eager :class:`StaticSession` computes with the same noise.
"""

from __future__ import annotations

import torch

from omnispeech.talker.model import GenerationConfig, Talker, TalkerState
from omnispeech.talker.static import StaticSession

# Eager steps before capture: libraries pick their algorithms and allocate workspaces.
WARMUP_STEPS = 2


class GraphSession(StaticSession):
    """:class:`StaticSession` whose :meth:`sample` and :meth:`advance` replay CUDA graphs.

    Args:
        talker: a talker on a CUDA device (dense, or with float experts).
        state: from :meth:`Talker.start` (prompt already in the cache).
        gen: sampling settings (fixed for the session: they are baked into the graphs).
    """

    def __init__(self, talker: Talker, state: TalkerState, gen: GenerationConfig) -> None:
        if state.hidden.device.type != "cuda":
            raise RuntimeError("GraphSession needs a talker on a CUDA device")
        super().__init__(talker, state, gen)
        buffers = (self.hidden, self.position, self.frames, self.seen, self.codes)
        saved = [b.clone() for b in buffers]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                StaticSession.sample(self)
                StaticSession.advance(self)
        torch.cuda.current_stream().wait_stream(side)
        # Warm-up wrote only buffers restored here and cache slots past the prompt, which
        # are overwritten before they become visible.
        for buffer, value in zip(buffers, saved, strict=True):
            buffer.copy_(value)
        self._sample_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._sample_graph):
            StaticSession.sample(self)
        self._advance_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._advance_graph):
            StaticSession.advance(self)

    def sample(self) -> torch.Tensor:
        self._sample_graph.replay()
        return self.codes

    def advance(self) -> torch.Tensor:
        self._advance_graph.replay()
        return self.hidden
