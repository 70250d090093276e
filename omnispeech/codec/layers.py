"""Streaming causal convs of the codec encoder: the strided conv and the SEANet built from it.

A causal conv with kernel ``k``, dilation ``d`` and stride ``S`` has the effective kernel
``k_eff = (k - 1) * d + 1``. Offline it is padded by ``k_eff - S`` on the left and, at the end,
by as much as a partial last stride window needs, so ``L`` inputs give ``ceil(L / S)`` outputs.
Output ``j`` reads the (padded) inputs ``j * S - (k_eff - S) .. (j + 1) * S - 1``::

    inputs   | pad pad | x0 x1 x2 x3 x4 x5 x6 ...        (k_eff = 4, S = 2: 2 pad samples)
    output 0 |  [------------]                      needs x0, x1
    output 1 |          [-------------]             needs up to x3
    output 2 |                 [-------------]      needs up to x5

So an output is final as soon as the last input of its stride arrives: while streaming, a conv
keeps its last ``k_eff - S`` inputs plus the inputs not yet forming a whole stride, and emits
every output whose window is complete. ``flush`` completes the last partial window exactly as
offline does (right padding: zeros, or the last sample for the replicate-padded conv) and
cascades: what one layer flushes is the last input of the next layer's flush.

Outside ``streaming()`` ``forward`` pads once on both sides and runs one conv: exactly what a
fresh stream fed everything and flushed returns (the tests hold the two equal), without the
stream's buffer copies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.codec.config import CodecEncoderConfig
from omnispeech.core.streaming import StreamingModule, StreamingState


@dataclasses.dataclass
class _StrideState(StreamingState):
    # [B, C_in, n]: padded inputs from the start of the next output's window on, i.e. the last
    # k_eff - S inputs (or the left padding) plus n - (k_eff - S) < S inputs of a partial stride.
    buffer: torch.Tensor
    # False until the first input: the replicate padding needs the stream's first sample.
    started: bool = False


class StridedCausalConv(StreamingModule[_StrideState]):
    """Causal conv ``[B, C_in, L]`` -> ``[B, C_out, ceil(L / stride)]`` (weights under ``conv.``).

    Args:
        c_in: input channels.
        c_out: output channels.
        kernel: kernel size k.
        stride: stride S (inputs per output).
        dilation: spacing of the kernel taps.
        bias: whether the conv has a bias.
        replicate: pad by repeating the stream's first sample on the left and its last one on
            the right (the codec's downsampling conv) instead of with zeros.
    """

    def __init__(  # noqa: PLR0913 - the conv's own hyper-parameters
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = True,
        replicate: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride, dilation=dilation, bias=bias)
        self.stride = stride
        self.effective = (kernel - 1) * dilation + 1
        if self.effective < stride:
            raise ValueError("the effective kernel must cover the stride (no input is skipped)")
        self.left = self.effective - stride
        self.replicate = replicate

    def _init_streaming_state(self, batch_size: int) -> _StrideState:
        w = self.conv.weight
        return _StrideState(batch_size, w.new_zeros(batch_size, w.shape[1], 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs ``[B, C_in, n]`` (n >= 0) -> the outputs now final ``[B, C_out, m]``.

        Outside ``streaming()``: all ``ceil(n / stride)`` outputs, as if flushed.
        """
        state = self.streaming_state
        if state is None:
            return self._whole(x)
        return self._push(x, state)

    def _whole(self, x: torch.Tensor) -> torch.Tensor:
        """What a fresh stream pushed ``x`` and flushed would give, in one padded conv (no
        intermediate copies; the streaming tests hold the two paths equal)."""
        n = x.shape[-1]
        if n == 0:
            return self._empty(x.shape[0])
        outputs = -(-n // self.stride)
        right = (outputs - 1) * self.stride + self.effective - self.left - n
        mode = "replicate" if self.replicate else "constant"
        return self.conv(F.pad(x, (self.left, right), mode=mode))

    def flush(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """Feed the last inputs ``x`` (None: none) and end the stream -> the remaining outputs.

        The state is reset, so the same context can run a new stream afterwards.
        """
        state = self.streaming_state
        if state is None:
            raise RuntimeError("flush() needs an active streaming() context")
        out = self._push(x, state) if x is not None else self._empty(state.batch_size)
        out = torch.cat((out, self._flush(state)), dim=-1)
        self._streaming_state = self._init_streaming_state(state.batch_size)
        return out

    def _push(self, x: torch.Tensor, state: _StrideState) -> torch.Tensor:
        if not state.started:
            if x.shape[-1] == 0:
                return self._empty(x.shape[0])
            if self.replicate:
                pad = x[..., :1].expand(-1, -1, self.left)
            else:
                pad = x.new_zeros(x.shape[0], x.shape[1], self.left)
            buf = torch.cat((pad, x), dim=-1)
            state.started = True
        else:
            buf = torch.cat((state.buffer, x), dim=-1)
        n = buf.shape[-1]
        count = (n - self.effective) // self.stride + 1 if n >= self.effective else 0
        # Clone: a view would keep the whole concatenation alive between calls.
        state.buffer = buf[..., count * self.stride :].clone()
        if count == 0:
            return self._empty(x.shape[0])
        return self.conv(buf[..., : (count - 1) * self.stride + self.effective])

    def _flush(self, state: _StrideState) -> torch.Tensor:
        """The output of the last partial stride window (right-padded), if there is one."""
        partial = state.buffer.shape[-1] - self.left  # inputs after the last emitted window
        if not state.started or partial == 0:
            return self._empty(state.batch_size)
        buf = state.buffer
        if self.replicate:
            buf = F.pad(buf, (0, self.stride - partial), mode="replicate")
        else:
            buf = F.pad(buf, (0, self.stride - partial))
        state.buffer = buf[..., buf.shape[-1] :]
        return self.conv(buf)

    def _empty(self, batch_size: int) -> torch.Tensor:
        w = self.conv.weight
        return w.new_zeros(batch_size, w.shape[0], 0)


def flush_layers(layers: Iterable[nn.Module], x: torch.Tensor | None) -> torch.Tensor | None:
    """Flush a chain of layers in order: each layer's flushed outputs feed the next one's flush.

    Layers without state (activations, the transformer whose state needs no flush) just run on
    what reaches them.
    """
    for layer in layers:
        if isinstance(layer, (StridedCausalConv, ResnetBlock)):
            x = layer.flush(x)
        elif x is not None:
            x = layer(x)
    return x


class ResnetBlock(nn.Module):
    """``x + conv_1(elu(conv_k(elu(x))))`` with the hidden width ``dim / compress``.

    Both convs have stride 1, so each input step gives one output step at once and the
    residual sum lines up while streaming.
    """

    def __init__(self, dim: int, hidden: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            [
                nn.ELU(),
                StridedCausalConv(dim, hidden, kernel, dilation=dilation),
                nn.ELU(),
                StridedCausalConv(hidden, dim, 1),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, dim, n]`` -> ``[B, dim, n]``."""
        h = x
        for layer in self.block:
            h = layer(h)
        return x + h

    def flush(self, x: torch.Tensor | None = None) -> torch.Tensor | None:
        """Feed the last inputs and end the stream (stride 1: nothing is held back)."""
        h = flush_layers(self.block, x)
        # With no last inputs the residual is empty: h is the (empty) flushed output alone.
        return h if x is None or h is None else x + h


class SEANetEncoder(nn.Module):
    """Conv k7 -> per ratio (reversed): resnet block(s), ELU, strided conv (channels x2) ->
    ELU -> conv to ``hidden_size``. ``[B, 1, S]`` samples -> ``[B, hidden, ceil(S / 960)]``
    frames at 25 Hz (960 = the product of the ratios)."""

    def __init__(self, cfg: CodecEncoderConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [StridedCausalConv(1, cfg.num_filters, cfg.kernel_size)]
        dim = cfg.num_filters
        for ratio in reversed(cfg.ratios):
            for j in range(cfg.num_residual_layers):
                layers.append(
                    ResnetBlock(
                        dim,
                        dim // cfg.compress,
                        cfg.residual_kernel_size,
                        cfg.dilation_growth_rate**j,
                    )
                )
            layers += [nn.ELU(), StridedCausalConv(dim, 2 * dim, 2 * ratio, stride=ratio)]
            dim *= 2
        layers += [nn.ELU(), StridedCausalConv(dim, cfg.hidden_size, cfg.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Samples ``[B, 1, n]`` -> the frames now final ``[B, hidden, m]``."""
        for layer in self.layers:
            x = layer(x)
        return x

    def flush(self) -> torch.Tensor:
        """End the stream -> the last frames ``[B, hidden, m]`` (the partial strides' outputs)."""
        out = flush_layers(self.layers, None)
        assert out is not None  # the first layer is a conv: it always returns a tensor
        return out
