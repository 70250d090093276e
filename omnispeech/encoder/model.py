"""AuT: the audio encoder of Qwen3-Omni and Qwen3-ASR.

log-mel ``[B, 128, T]`` (100 frames/s) -> tokens ``[B, N, output_dim]`` at 13 tokens/s.

1. The mel is cut into 1-s chunks of 100 frames; a partial last chunk is zero-padded.
2. Three ``Conv2d(k=3, s=2, p=1)`` + GELU over (mel, time): 100 frames -> 13 steps, 128 mel
   bins -> 16; flattened channel-major (480 * 16) and projected to ``d_model`` (no bias).
3. A sinusoid table is added; positions restart at 0 in every chunk.
4. Pre-LN transformer layers with bidirectional attention inside windows of 8 chunks (104
   tokens, 8 s) of one audio; windows never span audios.
5. ``ln_post``, then ``proj1`` -> GELU -> ``proj2`` into the LLM width.

Because windows are whole chunks, a window is final once its 8 chunks are in: this is what
makes exact incremental streaming cheap (see :mod:`omnispeech.encoder.streaming`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from omnispeech.encoder.config import EncoderConfig
from omnispeech.errors import InputError

CONV_BATCH = 32  # chunks per conv call: bounds peak memory (~200 MB at released sizes)


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper-style table ``[length, channels]``: all sines, then all cosines (float32)."""
    half = channels // 2
    inc = math.log(max_timescale) / (half - 1)
    inv = torch.exp(-inc * torch.arange(half, dtype=torch.float32, device="cpu"))
    angles = torch.arange(length, dtype=torch.float32, device="cpu")[:, None] * inv[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class EncoderAttention(nn.Module):
    """Multi-head self-attention with biases on all projections (Whisper layout)."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[W, L, D]``: W windows of L tokens each, attended bidirectionally; ``mask``
        ``[W, L]`` (True = a real token) hides padded keys, or None when all are real."""
        W, L, D = x.shape
        H = self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(W, L, H, D // H).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(self.q_proj(x)),
            heads(self.k_proj(x)),
            heads(self.v_proj(x)),
            attn_mask=None if mask is None else mask[:, None, None, :],
        )
        return self.out_proj(out.transpose(1, 2).reshape(W, L, D))


class EncoderLayer(nn.Module):
    """Pre-LN block: ``x + attn(ln(x))``, then ``x + fc2(gelu(fc1(ln(x))))``."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.self_attn = EncoderAttention(d_model, num_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d_model)
        self.final_layer_norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), mask)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class AuT(nn.Module):
    """The encoder network; weight names equal the released ``audio_tower`` keys.

    Most users want :class:`omnispeech.encoder.AudioEncoder`, which adds loading, input
    validation and streaming around this module.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.downsample_hidden_size
        self.conv2d1 = nn.Conv2d(1, ch, 3, stride=2, padding=1)
        self.conv2d2 = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
        self.conv2d3 = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
        self.conv_out = nn.Linear(ch * cfg.freq_bins_after_conv, cfg.d_model, bias=False)
        # Only rows 0..12 are ever used (positions restart per chunk); derived, not stored.
        self.register_buffer(
            "positions", sinusoids(cfg.tokens_per_chunk, cfg.d_model), persistent=False
        )
        self.layers = nn.ModuleList(
            EncoderLayer(cfg.d_model, cfg.encoder_attention_heads, cfg.encoder_ffn_dim)
            for _ in range(cfg.encoder_layers)
        )
        self.ln_post = nn.LayerNorm(cfg.d_model)
        if cfg.output_dim is not None:
            self.proj1 = nn.Linear(cfg.d_model, cfg.d_model)
            self.proj2 = nn.Linear(cfg.d_model, cfg.output_dim)

    @property
    def out_dim(self) -> int:
        return self.cfg.output_dim if self.cfg.output_dim is not None else self.cfg.d_model

    def embed_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        """Conv stem on whole chunks: ``[C, n_mels, F]`` (F frames, zero-padded) ->
        ``[C, ceil-ish(F / 8), d_model]`` with the per-chunk positions added."""
        if chunks.shape[0] > CONV_BATCH:
            # The first conv's output is 480 x 64 x 50 floats (6 MB) per chunk: a bounded number
            # of chunks at a time keeps long audio from needing gigabytes at once.
            return torch.cat([self.embed_chunks(part) for part in chunks.split(CONV_BATCH)])
        x = F.gelu(self.conv2d1(chunks[:, None]))
        x = F.gelu(self.conv2d2(x))
        x = F.gelu(self.conv2d3(x))
        C, ch, f, t = x.shape
        x = self.conv_out(x.permute(0, 3, 1, 2).reshape(C, t, ch * f))
        return x + self.positions[:t].to(x.dtype)

    def encode_windows(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Transformer and output head on W attention windows of L tokens each:
        ``[W, L, d_model]`` -> ``[W, L, out_dim]``; ``mask`` ``[W, L]`` marks the real tokens
        (None: all are real)."""
        for layer in self.layers:
            x = layer(x, mask)
        x = self.ln_post(x)
        if self.cfg.output_dim is not None:
            x = self.proj2(F.gelu(self.proj1(x)))
        return x

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Offline pass over a padded batch.

        Args:
            features: log-mel ``[B, n_mels, T]``; frames at or past ``lengths`` are ignored.
            lengths: valid frames per audio ``[B]`` (>= 1).

        Returns:
            ``[B, N_max, out_dim]``; row b is valid up to ``cfg.num_tokens(lengths[b])``, the rest
            is zero.
        """
        cfg = self.cfg
        B, M, T = features.shape
        cf, cpw = cfg.chunk_frames, cfg.chunks_per_window
        lens = [int(n) for n in lengths.tolist()]
        n_chunks = [-(-n // cf) for n in lens]
        max_chunks = max(n_chunks)
        # Zero every frame past its audio's length, then pad time to whole chunks.
        frame_ok = (
            torch.arange(T, device=features.device)[None, :] < lengths.to(features.device)[:, None]
        )
        x = features * frame_ok[:, None, :].to(features.dtype)
        x = (
            F.pad(x, (0, max_chunks * cf - T))
            if max_chunks * cf >= T
            else x[..., : max_chunks * cf]
        )
        chunks = x.view(B, M, max_chunks, cf).permute(0, 2, 1, 3)  # [B, nC, M, cf]
        dev = features.device
        chunk_ok = (torch.arange(max_chunks)[None, :] < torch.tensor(n_chunks)[:, None]).to(dev)
        width = cf
        if cfg.pad_short_batches_to_longest and max(lens) < cf:
            width = max(lens)  # the Qwen3-Omni rule for batches with no full chunk
        emb = self.embed_chunks(chunks[chunk_ok][..., :width])  # [C, t, D]
        t = emb.shape[1]
        # Scatter the valid chunks back into a [B, nC, t, D] grid, pad to whole windows.
        n_windows = -(-max_chunks // cpw)
        grid = emb.new_zeros(B, n_windows * cpw, t, emb.shape[-1])
        grid[:, :max_chunks][chunk_ok] = emb
        windows = grid.view(B, n_windows, cpw * t, -1)
        n_tok = torch.tensor([cfg.num_tokens(n) for n in lens])
        tok_pos = torch.arange(n_windows * cpw * t).view(n_windows, cpw * t)
        key_ok = (tok_pos[None] < n_tok[:, None, None]).to(dev)  # [B, nW, L]
        # Complete windows run together; each audio's last, partial window runs alone at its
        # true length, so no layer spends work on padding and no attention mask is needed.
        complete = key_ok.all(-1)
        full = windows.new_zeros(B, n_windows, cpw * t, self.out_dim)
        if bool(complete.any()):
            full[complete] = self.encode_windows(windows[complete])
        for b, w in (key_ok.any(-1) & ~complete).nonzero().tolist():
            n = int(key_ok[b, w].sum())
            full[b, w, :n] = self.encode_windows(windows[b, w, :n][None])[0]
        full = full.view(B, n_windows * cpw * t, -1)[:, : int(n_tok.max())]
        tok_ok = torch.arange(full.shape[1])[None, :] < n_tok[:, None]
        return full * tok_ok.to(full)[..., None]

    def forward_masked(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The offline pass with every window padded to full length and masked, so that the
        whole batch runs through the transformer in one call (training); equal to
        :meth:`forward` on the valid tokens, which only spends work on real tokens.

        Args:
            features: log-mel ``[B, n_mels, T]``; frames at or past ``lengths`` are ignored.
            lengths: valid frames per audio ``[B]`` (>= 1).

        Returns:
            ``[B, N_max, out_dim]``, zero past each audio's ``cfg.num_tokens(lengths[b])``.
        """
        cfg = self.cfg
        B, M, T = features.shape
        cf, cpw, dev = cfg.chunk_frames, cfg.chunks_per_window, features.device
        lens = lengths.to(dev)
        n_chunks = -(-lens // cf)
        max_chunks = int(n_chunks.max())
        n_windows = -(-max_chunks // cpw)
        frame_ok = torch.arange(T, device=dev)[None, :] < lens[:, None]
        x = features * frame_ok[:, None, :].to(features.dtype)
        x = F.pad(x, (0, max(0, n_windows * cpw * cf - T)))[..., : n_windows * cpw * cf]
        chunks = x.view(B, M, n_windows * cpw, cf).permute(0, 2, 1, 3)
        chunk_ok = torch.arange(n_windows * cpw, device=dev)[None, :] < n_chunks[:, None]
        emb = self.embed_chunks(chunks[chunk_ok])  # [C, t, D]: valid chunks only
        t = emb.shape[1]
        grid = emb.new_zeros(B, n_windows * cpw, t, emb.shape[-1])
        grid = grid.index_put((chunk_ok.nonzero(as_tuple=True)), emb)
        n_tok = torch.tensor([cfg.num_tokens(int(n)) for n in lengths.tolist()], device=dev)
        tok_ok = torch.arange(n_windows * cpw * t, device=dev)[None, :] < n_tok[:, None]
        windows = grid.view(B * n_windows, cpw * t, -1)
        window_mask = tok_ok.view(B * n_windows, cpw * t)
        used = window_mask.any(-1)  # windows past an audio's end are skipped
        # Real tokens come first in every window: cut the padding none of them reaches.
        width = int(window_mask.sum(-1).max())
        encoded = self.encode_windows(windows[used, :width], window_mask[used, :width])
        out = windows.new_zeros(B * n_windows, cpw * t, self.out_dim)
        out = out.index_put(
            (used.nonzero(as_tuple=True)), F.pad(encoded, (0, 0, 0, cpw * t - width))
        )
        out = out.view(B, n_windows * cpw * t, -1)[:, : int(n_tok.max())]
        return out * tok_ok[:, : out.shape[1], None].to(out)


def check_features(
    features: torch.Tensor, lengths: torch.Tensor | None, n_mels: int
) -> torch.Tensor:
    """Validate a feature batch; return the lengths (all frames when ``lengths`` is None).

    Raises:
        InputError: wrong rank or mel count, non-finite values, lengths out of range.
    """
    if features.dim() != 3 or features.shape[1] != n_mels:
        raise InputError(
            f"features must be [B, {n_mels}, T] log-mel frames, got shape {tuple(features.shape)}"
        )
    if not features.is_floating_point():
        raise InputError(f"features must be floating point, got {features.dtype}")
    if not bool(torch.isfinite(features).all()):
        raise InputError("features contain NaN or Inf")
    B, _, T = features.shape
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long)
    lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
    if lengths.shape != (B,):
        raise InputError(f"lengths must have shape [{B}], got {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > T).any()):
        raise InputError(f"lengths must lie in [1, {T}], got {lengths.tolist()}")
    return lengths
