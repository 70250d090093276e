"""Streaming causal conv layers of the Code2Wav decoder.

Every layer takes ``x [B, C, T]`` plus ``lengths [B]`` (valid steps per stream in this call;
None = all ``T``) and keeps exactly the state the next call needs:

- a causal conv keeps its last ``(k - 1) * dilation`` inputs (zeros at the start, which is the
  offline left padding);
- a transposed conv, computed in polyphase form, keeps its last ``k / stride - 1`` inputs and
  counts the leading samples the released model trims.

Outside ``streaming()`` the same code runs on a fresh state, so offline and streaming cannot
drift apart. Positions past a stream's length hold unspecified values; they never reach valid
positions because every layer is causal and the state is taken at each stream's own end.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.core.linear import StepLinear
from omnispeech.core.streaming import StreamingModule, StreamingState
from omnispeech.kernels import residual_add, snake_beta, tap_matmul


def take_tail(buf: torch.Tensor, ends: torch.Tensor | None, n: int) -> torch.Tensor:
    """The ``n`` steps before each stream's end: ``buf [B, C, N]``, ``ends [B]`` -> ``[B, C, n]``.

    ``ends`` None means every stream ends at ``N``.
    """
    if ends is None:
        return buf[..., buf.shape[-1] - n :].clone()
    idx = ends[:, None] - n + torch.arange(n, device=buf.device)
    return buf.gather(2, idx[:, None, :].expand(-1, buf.shape[1], -1))


class SnakeBeta(nn.Module):
    """``y = x + sin(x * e^alpha)^2 / (e^beta + 1e-9)`` per channel (alpha, beta in log scale).

    ``bias`` adds a preceding conv's bias inside the same pass; ``out`` lets the result land
    directly in the next conv's padded input buffer.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor | None = None, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        return snake_beta(x, self.alpha, self.beta, bias=bias, out=out)


@dataclasses.dataclass
class _ConvState(StreamingState):
    context: torch.Tensor  # [B, C_in, (k - 1) * dilation]: the last inputs, zeros at start


class CausalConv1d(StreamingModule[_ConvState]):
    """Stride-1 conv padded on the left only (weights under ``conv.``)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, dilation: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation, groups=groups)
        self.context = (kernel - 1) * dilation

    def _init_streaming_state(self, batch_size: int) -> _ConvState:
        w = self.conv.weight
        return _ConvState(
            batch_size, w.new_zeros(batch_size, w.shape[1] * self.conv.groups, self.context)
        )

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        act: SnakeBeta | None = None,
        add_bias: bool = True,
    ) -> torch.Tensor:
        """``[B, C_in, T]`` -> ``[B, C_out, T]``.

        Args:
            x: input steps of this call.
            lengths: valid steps per stream (None = all).
            act: an activation applied to ``x`` first, written straight into the padded buffer.
            add_bias: False leaves the bias to the caller (fused into the next activation).
        """
        b, c, t = x.shape
        state = self.streaming_state
        buf = x.new_empty(b, c, self.context + t)
        if state is None:
            buf[..., : self.context].zero_()
        else:
            buf[..., : self.context].copy_(state.context)
        if act is not None:
            act(x, out=buf[..., self.context :])
        else:
            buf[..., self.context :].copy_(x)
        if state is not None and self.context:
            ends = None if lengths is None else lengths + self.context
            # In place: state buffers keep their addresses (a CUDA graph replays on them).
            state.context.copy_(take_tail(buf, ends, self.context))
        bias = self.conv.bias if add_bias else None
        weight, dilation = self.conv.weight, self.conv.dilation[0]
        if self.conv.groups != 1 or (torch.is_grad_enabled() and weight.requires_grad):
            return F.conv1d(buf, weight, bias, dilation=dilation, groups=self.conv.groups)
        if self.conv.out_channels == 1:
            return _single_output_conv(buf, weight, bias, dilation)
        return tap_matmul(self._weight_taps(), buf, dilation, bias)

    def _weight_taps(self) -> torch.Tensor:
        """The weight as ``[k, C_out, C_in]`` (one contiguous matrix per tap), cached until the
        weight changes."""
        w = self.conv.weight
        key = (w.data_ptr(), w._version, w.device, w.dtype)
        if getattr(self, "_taps_key", None) != key:
            self._taps = w.detach().permute(2, 0, 1).contiguous()
            self._taps_key = key
        return self._taps


def _single_output_conv(
    buf: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int
) -> torch.Tensor:
    """Conv to one channel as a ``[k, C] @ [C, N]`` GEMM plus ``k`` shifted adds.

    The oneDNN conv is ~5x slower for a single output channel (the vocoder's last layer).
    """
    k = weight.shape[-1]
    n = buf.shape[-1] - (k - 1) * dilation
    taps = torch.matmul(weight[0].t(), buf)  # [B, k, N + context]
    out = taps[:, :1, :n].clone()
    for j in range(1, k):
        out += taps[:, j : j + 1, j * dilation : j * dilation + n]
    return out if bias is None else out.add_(bias[:, None])


@dataclasses.dataclass
class _TransState(StreamingState):
    context: torch.Tensor  # [B, C_in, k / stride - 1]: the last inputs, zeros at start
    to_trim: torch.Tensor  # [B] leading samples still to drop (the omni flavor drops k - stride)
    trimming: bool  # False once every stream has dropped them (no more device-to-host checks)


class CausalConvTranspose1d(StreamingModule[_TransState]):
    """Transposed conv (kernel ``k``, a multiple of ``stride``) with the released trimming,
    computed in polyphase form.

    Output sample ``t * stride + j`` is ``sum_i W[:, :, i * stride + j]^T x[t - i]`` over the
    ``m = k / stride`` most recent inputs: a causal conv of kernel ``m`` whose ``stride * C_out``
    output rows are interleaved into time. So each input yields exactly ``stride`` final samples,
    the state is the last ``m - 1`` inputs (as for any causal conv), and there is no overlap-add.
    The plain transposed conv's last ``k - stride`` samples (which would need the next input) are
    never made; both released flavors drop them. ``trim_left`` also drops ``k - stride`` samples
    at the start (Qwen3-Omni).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, trim_left: bool) -> None:
        super().__init__()
        if kernel % stride:
            raise ValueError("kernel must be a multiple of stride")
        self.conv = nn.ConvTranspose1d(c_in, c_out, kernel, stride=stride)
        self.stride = stride
        self.phases = kernel // stride
        self.trim_left = kernel - stride if trim_left else 0

    def _init_streaming_state(self, batch_size: int) -> _TransState:
        w = self.conv.weight
        return _TransState(
            batch_size,
            w.new_zeros(batch_size, w.shape[0], self.phases - 1),
            torch.full((batch_size,), self.trim_left, dtype=torch.long, device=w.device),
            self.trim_left > 0,
        )

    def _poly_taps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights as causal-conv taps ``[m, C_out * stride, C_in]`` (tap ``j`` reads input
        ``t - (m - 1 - j)``) and the bias per output row; cached until the weights change."""
        w, b = self.conv.weight, self.conv.bias
        key = (w.data_ptr(), w._version, b.data_ptr(), b._version, w.device, w.dtype)
        if getattr(self, "_taps_key", None) != key or torch.is_grad_enabled():
            c_in, c_out, _ = w.shape
            # [C_in, C_out, m, s] -> [m, C_out, s, C_in]; phase i reads x[t - i].
            taps = w.view(c_in, c_out, self.phases, self.stride).permute(2, 1, 3, 0)
            taps = taps.flip(0).reshape(self.phases, c_out * self.stride, c_in).contiguous()
            self._taps = (taps, b.repeat_interleave(self.stride))
            self._taps_key = key
        return self._taps

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, C_in, T]`` -> (``[B, C_out, T * stride]`` less the trim, valid samples per
        stream or None if all)."""
        state = self.streaming_state
        if state is None:
            state = self._init_streaming_state(x.shape[0])
        b, _, t = x.shape
        ctx = self.phases - 1
        if ctx:
            buf = torch.cat((state.context, x), dim=-1)
            ends = None if lengths is None else lengths + ctx
            state.context.copy_(take_tail(buf, ends, ctx))
        else:
            buf = x
        taps, bias = self._poly_taps()
        y = tap_matmul(taps, buf, 1, bias)  # [B, C_out * s, T], row o * s + j
        c_out = taps.shape[1] // self.stride
        out = y.view(b, c_out, self.stride, t).transpose(2, 3).reshape(b, c_out, t * self.stride)
        ends = None if lengths is None else lengths * self.stride
        if not state.trimming:
            return out, ends
        return self._trim(out, ends, state)

    def _trim(
        self, out: torch.Tensor, ends: torch.Tensor | None, state: _TransState
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = out.shape[-1] if ends is None else ends
        drop = torch.minimum(state.to_trim, torch.as_tensor(n, device=out.device))
        state.to_trim.sub_(drop)
        state.trimming = bool(state.to_trim.any())
        if bool((drop == drop[0]).all()):
            d = int(drop[0])
            return out[..., d:], None if ends is None else ends - d
        # Streams disagree on what to drop: shift each left by its own amount.
        idx = (drop[:, None] + torch.arange(out.shape[-1], device=out.device)).clamp_max(
            out.shape[-1] - 1
        )
        shifted = out.gather(2, idx[:, None, :].expand(-1, out.shape[1], -1))
        lengths = (torch.full_like(drop, out.shape[-1]) if ends is None else ends) - drop
        return shifted, lengths


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv k7 -> LayerNorm -> Linear 4x -> GELU -> Linear -> gamma, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, 7, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = StepLinear(dim, 4 * dim)
        self.pwconv2 = StepLinear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        h = self.dwconv(x, lengths).transpose(1, 2)
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class ResidualUnit(nn.Module):
    """``x + conv_k1(snake(conv_k7_dilated(snake(x))))``.

    Biases are fused: conv1's into the second activation, conv2's into the residual add.
    """

    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.act1 = SnakeBeta(dim)
        self.conv1 = CausalConv1d(dim, dim, 7, dilation=dilation)
        self.act2 = SnakeBeta(dim)
        self.conv2 = CausalConv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(x, lengths, act=self.act1, add_bias=False)
        h = self.act2(h, bias=self.conv1.conv.bias, out=h)
        # A k1 conv is a matmul over channels; no context, so no streaming state is involved.
        y = torch.matmul(self.conv2.conv.weight[:, :, 0], h)
        return residual_add(x, y, self.conv2.conv.bias, out=y)


class DecoderBlock(nn.Module):
    """SnakeBeta -> transposed conv (upsample by ``rate``, halve channels) -> 3 residual units
    (dilations 1, 3, 9). Weights under ``block.{0..4}`` as in the released checkpoints."""

    def __init__(self, c_in: int, c_out: int, rate: int, trim_left: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            [
                SnakeBeta(c_in),
                CausalConvTranspose1d(c_in, c_out, 2 * rate, rate, trim_left),
                *(ResidualUnit(c_out, d) for d in (1, 3, 9)),
            ]
        )

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, lengths = self.block[1](self.block[0](x), lengths)
        for unit in self.block[2:]:
            h = unit(h, lengths)
        return h, lengths
