"""ECAPA-TDNN building blocks of the Qwen3-TTS speaker encoder.

ECAPA-TDNN (Desplanques et al. 2020, "Emphasized Channel Attention, Propagation and Aggregation
in TDNN Based Speaker Verification") turns a variable-length feature sequence ``[B, C, T]`` into
one fixed-size vector per item. The pieces:

* :class:`TdnnBlock`: a dilated 1-D conv + ReLU (a "time delay" layer) whose output keeps the
  input's length: the input is reflect padded by ``dilation * (kernel - 1)`` frames in all,
  half on each side (the extra frame of an odd total on the right).
* :class:`Res2NetConv`: channels split into ``scale`` groups; group ``i`` is convolved after
  adding the previous group's output, so later groups see a growing receptive field.
* :class:`SqueezeExcite`: channel gains in (0, 1) computed from the time average.
* :class:`SERes2NetBlock`: 1x1 TDNN -> Res2Net -> 1x1 TDNN -> squeeze-excite, plus the input.
* :class:`AttentiveStatsPool`: softmax attention over time, per channel, and the weighted mean
  and standard deviation, conditioned on the clip's global mean and standard deviation.

Every layer takes plain ints; :class:`omnispeech.talker.SpeakerEncoder` assembles them. The
attribute names (``conv``, ``tdnn1``, ``res2net_block``, ``se_block``, ``tdnn``, ...) are those
of the released state dict, so its tensors load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Floor of the variance before the square root: a constant channel gets std 1e-6, not 0, so
# the gradient and the next layers stay finite (the reference's value).
_VAR_FLOOR = 1e-12


class TdnnBlock(nn.Module):
    """Length-preserving dilated conv + ReLU: ``[B, C_in, T]`` -> ``[B, C_out, T]``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: taps of the conv (odd in the released model).
        dilation: frames between taps.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        total = dilation * (kernel_size - 1)
        # (left, right): "same" output length, the odd frame (even kernels) on the right.
        self.padding = (total // 2, total - total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding[1]:
            # Reflect padding (not zeros) mirrors the clip's first and last frames, so the edges
            # look like speech rather than silence; it needs T > padding frames.
            x = F.pad(x, self.padding, mode="reflect")
        return F.relu(self.conv(x))


class Res2NetConv(nn.Module):
    """Hierarchical grouped conv: ``[B, C, T]`` -> ``[B, C, T]``.

    The channels are cut into ``scale`` equal groups ``x_0 .. x_{s-1}``; ``y_0 = x_0``,
    ``y_1 = f_1(x_1)`` and ``y_i = f_i(x_i + y_{i-1})``; the output concatenates the ``y_i``.

    Args:
        channels: input and output channels (a multiple of ``scale``).
        scale: number of groups.
        kernel_size: taps of each group's :class:`TdnnBlock`.
        dilation: frames between taps.
    """

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        width = channels // scale
        self.scale = scale
        # One conv per group but the first, which passes through unchanged.
        self.blocks = nn.ModuleList(
            TdnnBlock(width, width, kernel_size, dilation) for _ in range(scale - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.chunk(x, self.scale, dim=1)
        outputs = [groups[0]]
        previous: torch.Tensor | None = None
        for group, block in zip(groups[1:], self.blocks, strict=True):
            previous = block(group if previous is None else group + previous)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SqueezeExcite(nn.Module):
    """Channel attention: ``x [B, C, T]`` times gains ``[B, C, 1]`` from its time average.

    Args:
        channels: input and output channels.
        bottleneck: channels of the squeeze layer.
    """

    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, bottleneck, 1)
        self.conv2 = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        summary = x.mean(dim=2, keepdim=True)  # [B, C, 1]
        gains = torch.sigmoid(self.conv2(F.relu(self.conv1(summary))))
        return x * gains


class SERes2NetBlock(nn.Module):
    """One ECAPA block, residual: ``[B, C, T]`` -> ``[B, C, T]``.

    Args:
        channels: input and output channels.
        res2net_scale: groups of the :class:`Res2NetConv`.
        se_channels: bottleneck of the :class:`SqueezeExcite`.
        kernel_size: taps of the Res2Net convs.
        dilation: their dilation.
    """

    def __init__(
        self, channels: int, res2net_scale: int, se_channels: int, kernel_size: int, dilation: int
    ) -> None:
        super().__init__()
        self.tdnn1 = TdnnBlock(channels, channels)
        self.res2net_block = Res2NetConv(channels, res2net_scale, kernel_size, dilation)
        self.tdnn2 = TdnnBlock(channels, channels)
        self.se_block = SqueezeExcite(channels, se_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tdnn2(self.res2net_block(self.tdnn1(x)))
        return self.se_block(y) + x


def weighted_stats(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of ``x [B, C, T]`` over time under ``weights``.

    Args:
        x: features.
        weights: ``[B, C or 1, T]`` non-negative, summing to 1 over ``T``.

    Returns:
        ``(mean [B, C], std [B, C])``.
    """
    mean = (weights * x).sum(dim=2)
    var = (weights * (x - mean.unsqueeze(2)).pow(2)).sum(dim=2)
    return mean, var.clamp(min=_VAR_FLOOR).sqrt()


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling: ``[B, C, T]`` -> ``[B, 2 C]`` (weighted mean, then std).

    Each channel gets its own softmax over the ``T`` frames. The attention sees every frame
    together with the clip's plain mean and std, so it can weigh frames against the whole clip.
    All frames are valid (batches hold clips of one length; there is no padding mask).

    Args:
        channels: input channels ``C``.
        attention_channels: hidden channels of the attention.
    """

    def __init__(self, channels: int, attention_channels: int) -> None:
        super().__init__()
        self.tdnn = TdnnBlock(3 * channels, attention_channels)
        self.conv = nn.Conv1d(attention_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T = x.shape
        # Uniform weights (1 / T per frame) give the plain statistics with the same arithmetic
        # as the attentive ones below.
        uniform = torch.full((B, 1, T), 1.0 / T, dtype=x.dtype, device=x.device)
        mean, std = weighted_stats(x, uniform)
        context = torch.cat(
            [x, mean.unsqueeze(2).expand(B, C, T), std.unsqueeze(2).expand(B, C, T)], dim=1
        )
        logits = self.conv(torch.tanh(self.tdnn(context)))  # [B, C, T]
        mean, std = weighted_stats(x, torch.softmax(logits, dim=2))
        return torch.cat([mean, std], dim=1)
