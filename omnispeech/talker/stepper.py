"""One frame at a time, whichever way the frame is computed.

The talker's frames can be stepped three ways with the same interface: the reference loop
(:meth:`Talker.sample_frame` / :meth:`Talker.advance`), the fixed-shape step run eagerly
(:class:`~omnispeech.talker.static.StaticSession`), or that step replayed as CUDA graphs
(:class:`~omnispeech.talker.graph.GraphSession`). The TTS pipeline and the Qwen3-Omni voice
both drive :class:`FrameStepper`, so either talker family takes any of the three.
"""

from __future__ import annotations

import torch

from omnispeech.talker.model import GenerationConfig, Talker, TalkerState
from omnispeech.talker.static import StaticSession

# "eager": the reference loop; "static": fixed shapes, eagerly; "graph": CUDA graphs.
STEPS = ("eager", "static", "graph")


def default_step(talker: Talker) -> str:
    """CUDA graphs on a CUDA device (a frame is thousands of small launches there), the
    reference loop elsewhere."""
    return "graph" if talker.codec_head.weight.device.type == "cuda" else "eager"


class FrameStepper:
    """Frames of one stream after :meth:`Talker.start`.

    Args:
        talker: the talker (dense or mixture of experts).
        state: from :meth:`Talker.start`; the reference loop keeps advancing it.
        generation: sampling settings.
        generator: the stream's random numbers (None: torch's default generator).
        step: one of :data:`STEPS`.
    """

    def __init__(  # noqa: PLR0913 - one stream's settings
        self,
        talker: Talker,
        state: TalkerState,
        generation: GenerationConfig,
        generator: torch.Generator | None,
        step: str = "eager",
    ) -> None:
        if step not in STEPS:
            raise ValueError(f"step must be one of {', '.join(STEPS)}, not {step!r}")
        if step != "eager" and generation.guidance != 1.0:
            raise ValueError("guidance runs on the reference (eager) step only")
        self.talker, self.state, self.generation = talker, state, generation
        self.generator = generator
        self.session: StaticSession | None = None
        if step == "static":
            self.session = StaticSession(talker, state, generation)
        elif step == "graph":
            from omnispeech.talker.graph import GraphSession

            self.session = GraphSession(talker, state, generation)

    def sample(self, allow_end: bool = True) -> torch.Tensor | None:
        """The next frame's codes ``[1, K]``, or None at end-of-speech (never chosen while
        ``allow_end`` is False; the fixed-shape steps always allow it)."""
        gen = self.generation
        if self.session is None:
            codes = self.talker.sample_frame(self.state, gen, self.generator, allow_end)
            return None if bool(self.state.done.all()) else codes
        if gen.talker.do_sample or gen.code_predictor.do_sample:
            self.session.fill_noise(self.generator)
        codes = self.session.sample().clone()
        return None if int(codes[0, 0]) == self.talker.spec.tokens.codec_eos else codes

    def advance(self, codes: torch.Tensor, text: torch.Tensor) -> None:
        """Feed frame ``codes`` ``[1, K]`` plus the text-track vector ``text`` ``[hidden]``."""
        if self.session is None:
            self.talker.advance(self.state, codes, text[None])
        else:
            self.session.text.copy_(text[None])
            self.session.advance()

    def feed(self, inputs: torch.Tensor) -> None:
        """Feed ready input vectors ``[n, hidden]``, or ``[B, n, hidden]`` for a state of
        ``B`` rows (the reference loop only)."""
        if self.session is not None:
            raise ValueError("the fixed-shape steps take one frame and one text vector at a time")
        self.talker.feed(self.state, inputs if inputs.dim() == 3 else inputs[None])
