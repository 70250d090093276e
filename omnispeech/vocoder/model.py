"""``Code2Wav``: codec codes -> 24 kHz waveform, offline and streaming from the first frame.

The network is causal with no look-ahead: once frame ``t`` is known, every output sample it
influences up to ``(t + 1) * hop`` is final. Streaming therefore emits ``hop`` (1920) samples per
frame (the omni flavor's first frame ``hop - 555``, the samples its model trims), and offline
decoding is the same code run on a fresh state, so the two agree by construction.

Speed: the conv decoder runs in tiles. At 24 kHz a one-second activation of 96 channels is 9 MB;
tiles of 2-4 frames keep most of the late blocks' intermediates in the core's L2 cache, which
makes the 24 kHz convs about twice as fast as one pass over the whole signal. The early blocks,
whose weights are large, run on wider tiles so that each weight read serves many samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from omnispeech.checkpoint import (
    CheckpointFolder,
    load_module,
    resolve_folder,
    save_folder,
)
from omnispeech.core.streaming import StreamingModule, StreamingState
from omnispeech.errors import InputError
from omnispeech.vocoder.config import Code2WavConfig
from omnispeech.vocoder.conv import (
    CausalConv1d,
    CausalConvTranspose1d,
    ConvNeXtBlock,
    DecoderBlock,
    SnakeBeta,
)
from omnispeech.vocoder.embed import MeanCodeEmbedding, SplitResidualDequantizer
from omnispeech.vocoder.layouts import OWN_MODEL_TYPE, detect_layout
from omnispeech.vocoder.tiles import (
    COARSE_BLOCKS,
    TilePlan,
    coarse_hop,
    default_plan,
    measure_plan,
    plan_key,
    store_plan,
    time_decode,
)
from omnispeech.vocoder.transformer import PreTransformer

# Frames per transformer call when a call holds many (bounds the attention memory offline).
TRANSFORMER_BLOCK = 256


@dataclasses.dataclass(frozen=True)
class AudioChunk:
    """Audio of a batch of streams.

    Attributes:
        wav: ``[B, 1, S]`` float32 in [-1, 1] at the model's sample rate; zero past ``lengths``.
        lengths: valid samples per stream ``[B]``.
    """

    wav: torch.Tensor
    lengths: torch.Tensor

    def unpadded(self) -> list[torch.Tensor]:
        """One ``[S_b]`` waveform per stream."""
        return [self.wav[b, 0, : int(n)] for b, n in enumerate(self.lengths)]


@dataclasses.dataclass
class _Stream(StreamingState):
    """The layers hold the state; this level only marks that a stream batch is open."""


class Code2Wav(StreamingModule[_Stream]):
    """The Code2Wav vocoder of Qwen3-Omni and of the Qwen3-TTS 12 Hz tokenizer.

    Offline::

        wav = vocoder(codes)                  # codes [B, K, T] int64 -> [B, 1, S] float32

    Streaming (streams may advance by different numbers of frames)::

        with vocoder.streaming(batch_size=2):
            for codes in frames:              # [2, K, n], any n >= 0
                chunk = vocoder.push(codes)   # AudioChunk: final samples only
            chunk = vocoder.flush()

    Args:
        cfg: the network shape.
        coarse_frames: frames per tile of the upsampler and first decoder block.
        fine_frames: frames per tile of the later decoder blocks (fractions allowed: on a
            core with a small L2 cache a tile of less than a frame is fastest). None (both):
            this machine's plan (:func:`omnispeech.vocoder.tiles.default_plan`: a measured one
            if :meth:`tune_tiles` stored it, else derived from the cache sizes). Tiles change
            speed and memory only; the output is the same for any tile sizes.
    """

    def __init__(
        self,
        cfg: Code2WavConfig,
        coarse_frames: int | None = None,
        fine_frames: float | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self._coarse_hop = coarse_hop(cfg)  # coarse-stage samples per frame
        plan = default_plan(cfg)
        self.set_tiles(
            TilePlan(
                plan.coarse_frames if coarse_frames is None else coarse_frames,
                plan.fine_samples if fine_frames is None else self._fine_samples(fine_frames),
                plan.source if coarse_frames is None and fine_frames is None else "given",
            )
        )
        trim = cfg.trims_left
        if cfg.flavor == "omni":
            self.code_embedding = MeanCodeEmbedding(cfg)
        else:
            self.quantizer = SplitResidualDequantizer(cfg)
            self.pre_conv = CausalConv1d(cfg.codebook_dim, cfg.latent_dim, 3)
        self.pre_transformer = PreTransformer(cfg)
        self.upsample = nn.ModuleList(
            nn.ModuleList(
                [
                    CausalConvTranspose1d(cfg.latent_dim, cfg.latent_dim, r, r, trim),
                    ConvNeXtBlock(cfg.latent_dim),
                ]
            )
            for r in cfg.upsampling_ratios
        )
        dims = [cfg.decoder_dim // 2**i for i in range(len(cfg.upsample_rates) + 1)]
        self.decoder = nn.ModuleList(
            [
                CausalConv1d(cfg.latent_dim, cfg.decoder_dim, 7),
                *(
                    DecoderBlock(dims[i], dims[i + 1], r, trim)
                    for i, r in enumerate(cfg.upsample_rates)
                ),
                SnakeBeta(dims[-1]),
                CausalConv1d(dims[-1], 1, 7),
            ]
        )

    # -- tiles ----------------------------------------------------------------------------------
    @property
    def tiles(self) -> TilePlan:
        """The tile plan in force (see :mod:`omnispeech.vocoder.tiles`)."""
        return self._tiles

    def set_tiles(self, plan: TilePlan) -> None:
        """Use these tile widths from the next call on (the output does not change)."""
        self._tiles = plan

    @property
    def coarse_frames(self) -> int:
        """Coarse tile width in code frames."""
        return self._tiles.coarse_frames

    @coarse_frames.setter
    def coarse_frames(self, frames: int) -> None:
        self.set_tiles(dataclasses.replace(self._tiles, coarse_frames=frames))

    @property
    def fine_frames(self) -> float:
        """Fine tile width in code frames (coarse-stage samples / samples per frame)."""
        return self._tiles.fine_samples / self._coarse_hop

    @fine_frames.setter
    def fine_frames(self, frames: float) -> None:
        self.set_tiles(dataclasses.replace(self._tiles, fine_samples=self._fine_samples(frames)))

    def _fine_samples(self, frames: float) -> int:
        if not frames > 0:
            raise ValueError(f"tile sizes must be positive, got {frames!r} frames")
        return max(1, round(frames * self._coarse_hop))

    def tune_tiles(
        self,
        frames: int = 25,
        repeats: int = 2,
        store: bool = True,
        progress: Callable[[TilePlan, float], None] | None = None,
    ) -> TilePlan:
        """Time candidate tile plans on this machine and keep the fastest.

        Decodes ``frames`` random frames (2 s by default) ``repeats + 1`` times per candidate
        (9 candidates; about 10-30 s at the released shapes on 2 cores). With ``store`` the plan
        is written to the plan file (:func:`omnispeech.vocoder.tiles.plan_file`) under this
        processor, thread count, shape and dtype, so every later Code2Wav built here uses it.

        Returns:
            The plan now in force.
        """
        if self.is_streaming:
            raise RuntimeError("tune_tiles decodes offline: leave streaming() first")
        plan = measure_plan(time_decode(self, frames, repeats), self.cfg, progress=progress)
        self.set_tiles(plan)
        if store:
            store_plan(plan_key(self.cfg, self.pre_transformer.norm.weight.dtype), plan)
        return plan

    @property
    def sample_rate(self) -> int:
        """Output samples per second (24000)."""
        return self.cfg.sample_rate

    @property
    def hop_length(self) -> int:
        """Output samples per code frame (1920)."""
        return self.cfg.hop_length

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        coarse_frames: int | None = None,
        fine_frames: float | None = None,
    ) -> Code2Wav:
        """Load from a Qwen3-Omni, Qwen3-TTS-Tokenizer-12Hz or omnispeech folder.

        Only the vocoder's tensors are read, however large the checkpoint. Tile widths as in
        :class:`Code2Wav` (None: this machine's plan for the model's shape and ``dtype``).

        Raises:
            CheckpointError: missing folder, wrong kind of checkpoint, or mismatched keys.
        """
        folder = CheckpointFolder(resolve_folder(name_or_path))
        layout = detect_layout(folder)
        model = load_module(
            folder,
            lambda: cls(layout.config, coarse_frames, fine_frames),
            layout.prefix,
            dtype,
            device,
            layout.kind,
        )
        if coarse_frames is None and fine_frames is None:
            model.set_tiles(default_plan(model.cfg, dtype))  # 16-bit activations: wider tiles
        return model

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` + ``model.safetensors`` (released names under ``code2wav.``)."""
        config = {"model_type": OWN_MODEL_TYPE, "code2wav": self.cfg.to_dict()}
        save_folder(path, config, {f"code2wav.{k}": v for k, v in self.state_dict().items()})

    # -- public calls ---------------------------------------------------------------------------
    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode ``codes [B, K, T]`` (integers in ``[0, codebook_size)``) -> ``[B, 1, S]``.

        ``S = cfg.num_samples(T)``: ``1920 * T - 555`` (omni) or ``1920 * T`` (tts12hz).

        Raises:
            InputError: wrong dtype, shape, number of codebooks, empty or out-of-range codes.
        """
        return self.decode(codes).wav

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, lengths: torch.Tensor | None = None) -> AudioChunk:
        """Decode a padded batch: ``lengths [B]`` valid frames per item (None = all ``T``).

        Codes past an item's length are ignored (e.g. ``-1`` padding).
        """
        if self.is_streaming:
            raise RuntimeError("inside streaming(): use push() and flush(), not decode()")
        codes, lengths = self._check(codes, lengths)
        if codes.shape[-1] == 0:
            raise InputError("empty code sequence: nothing to decode (T = 0)")
        with self.streaming(codes.shape[0]):
            return self._run(codes, lengths)

    @torch.inference_mode()
    def push(self, codes: torch.Tensor, lengths: torch.Tensor | None = None) -> AudioChunk:
        """Feed the next frames of every stream ``[B, K, n]`` and get the samples now final.

        ``lengths [B]`` lets streams advance by different counts (codes past them are ignored).
        A push of zero frames returns empty audio.
        """
        state = self._state()
        codes, lengths = self._check(codes, lengths, batch=state.batch_size)
        return self._run(codes, lengths)

    def flush(self) -> AudioChunk:
        """End every stream; returns what remains of the offline output.

        The decoder has no look-ahead, so everything the offline decoder would output has
        already been pushed out: the tail is empty (``[B, 1, 0]``). The samples still waiting
        for a next frame are exactly those the released models trim at the end.
        """
        state = self._state()
        self.reset_streaming()
        w = self.pre_transformer.norm.weight
        return AudioChunk(
            w.new_zeros(state.batch_size, 1, 0, dtype=torch.float32),
            torch.zeros(state.batch_size, dtype=torch.long),
        )

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Decode dequantised codes ``[B, codebook_dim, T]`` -> ``[B, 1, 1920 * T]``, with autograd.

        The training path of the tts12hz flavor: ``latent`` is what :attr:`quantizer` makes of
        codes (the summed, projected codebook vectors), here coming from a trainable quantizer.
        The same layers run as in :meth:`decode`, offline on a fresh state and untiled, so
        gradients reach every weight.

        Raises:
            InputError: the omni flavor (it has no quantizer latent) or a wrong shape.
        """
        if self.cfg.flavor != "tts12hz":
            raise InputError("decode_latent needs the tts12hz flavor (a split RVQ decoder)")
        if latent.dim() != 3 or latent.shape[1] != self.cfg.codebook_dim:
            raise InputError(
                f"latent must be [B, {self.cfg.codebook_dim}, T], got {tuple(latent.shape)}"
            )
        if self.is_streaming:
            raise RuntimeError("decode_latent runs offline: leave streaming() first")
        h = self.pre_transformer(self.pre_conv(latent).transpose(1, 2)).transpose(1, 2)
        h, _ = self._coarse(h, None)
        return self._fine(h, None)[0]

    # -- internals ------------------------------------------------------------------------------
    def _state(self) -> _Stream:
        if self.streaming_state is None:
            raise RuntimeError("push/flush need an active `with vocoder.streaming(batch):` block")
        return self.streaming_state

    def _init_streaming_state(self, batch_size: int) -> _Stream:
        return _Stream(batch_size)

    def _check(
        self, codes: torch.Tensor, lengths: torch.Tensor | None, batch: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return check_codes(self.cfg, codes, lengths, batch, self.pre_transformer.norm.weight.device)

    def _run(self, codes: torch.Tensor, lengths: torch.Tensor | None) -> AudioChunk:
        self._state()
        b, _, t = codes.shape
        if t == 0:
            return _empty(b, self.pre_transformer.norm.weight.device)
        if lengths is not None:
            # Padding may hold anything (e.g. -1); embed a valid code there and ignore it.
            codes = codes.clamp_min(0)
        hidden = self._embed(codes, lengths)  # [B, latent, T]
        fine_step = self._tiles.fine_samples
        pieces = []
        for h, n in _tiles(hidden, lengths, self.coarse_frames):
            h, n = self._coarse(h, n)
            pieces.extend(self._fine(h2, n2) for h2, n2 in _tiles(h, n, fine_step))
        return _concat(pieces)

    def _embed(self, codes: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if self.cfg.flavor == "omni":
            h = self.code_embedding(codes)  # [B, T, latent]
        else:
            h = self.pre_conv(self.quantizer(codes), lengths).transpose(1, 2)
        out = [self.pre_transformer(x, n) for x, n in _tiles(h, lengths, TRANSFORMER_BLOCK, 1)]
        return torch.cat(out, dim=1).transpose(1, 2)

    def _coarse(
        self, h: torch.Tensor, lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Upsampler, first conv and the first ``COARSE_BLOCKS`` decoder blocks."""
        for trans, convnext in self.upsample:
            h, lengths = trans(h, lengths)
            h = convnext(h, lengths)
        h = self.decoder[0](h, lengths)
        for block in self.decoder[1 : 1 + COARSE_BLOCKS]:
            h, lengths = block(h, lengths)
        return h, lengths

    def _fine(
        self, h: torch.Tensor, lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The remaining decoder blocks, the last activation and conv -> ``[B, 1, S]``."""
        for block in self.decoder[1 + COARSE_BLOCKS : -2]:
            h, lengths = block(h, lengths)
        wav = self.decoder[-1](h, lengths, act=self.decoder[-2])
        return wav.clamp_(-1.0, 1.0), lengths


def _tiles(
    x: torch.Tensor, lengths: torch.Tensor | None, size: int, dim: int = -1
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Consecutive slices of ``size`` steps along ``dim`` with each stream's valid steps.

    Valid steps are a prefix of every stream, so a tile's valid part is a prefix too.
    """
    total = x.shape[dim]
    for start in range(0, total, size):
        piece = x.narrow(dim, start, min(size, total - start))
        n = piece.shape[dim]
        yield piece, None if lengths is None else (lengths - start).clamp(0, n)


def check_codes(
    cfg: Code2WavConfig,
    codes: torch.Tensor,
    lengths: torch.Tensor | None,
    batch: int | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate ``codes [B, K, T]`` (and ``lengths [B]``) and move them to ``device``.

    Raises:
        InputError: with what is wrong and what was expected.
    """
    if not isinstance(codes, torch.Tensor):
        raise InputError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise InputError(f"codes must be integers, got {codes.dtype}")
    if codes.dim() != 3:
        raise InputError(
            f"codes must be [batch, codebooks, frames], got shape {tuple(codes.shape)}"
        )
    b, k, t = codes.shape
    if k != cfg.num_quantizers:
        raise InputError(f"expected {cfg.num_quantizers} codebooks, got {k}")
    if batch is not None and b != batch:
        raise InputError(f"this stream batch has {batch} streams, got codes for {b}")
    if lengths is not None:
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        if lengths.shape != (b,) or bool((lengths < 0).any()) or bool((lengths > t).any()):
            raise InputError(f"lengths must be [{b}] values in [0, {t}], got {lengths.tolist()}")
        valid = torch.arange(t)[None, None, :] < lengths[:, None, None]
        checked = codes.cpu()[valid.expand(b, k, t)]
        lengths = lengths.to(device)
        if bool((lengths == t).all()):
            lengths = None
    else:
        checked = codes
    if checked.numel():
        lo, hi = int(checked.min()), int(checked.max())
        if lo < 0 or hi >= cfg.codebook_size:
            raise InputError(
                f"codes must lie in [0, {cfg.codebook_size - 1}], got values in [{lo}, {hi}]"
            )
    return codes.to(device=device, dtype=torch.long).contiguous(), lengths


def _empty(batch: int, device: torch.device) -> AudioChunk:
    return AudioChunk(torch.zeros(batch, 1, 0, device=device), torch.zeros(batch, dtype=torch.long))


def _concat(pieces: list[tuple[torch.Tensor, torch.Tensor | None]]) -> AudioChunk:
    """Join tiles; streams whose valid lengths differ are packed stream by stream."""
    b = pieces[0][0].shape[0]
    if all(n is None for _, n in pieces):
        wav = torch.cat([w for w, _ in pieces], dim=-1)
        return AudioChunk(wav, torch.full((b,), wav.shape[-1], dtype=torch.long))
    per_stream = [
        torch.cat([w[i, 0, : (w.shape[-1] if n is None else int(n[i]))] for w, n in pieces], dim=-1)
        for i in range(b)
    ]
    lengths = torch.tensor([x.shape[0] for x in per_stream], dtype=torch.long)
    wav = pieces[0][0].new_zeros(b, 1, int(lengths.max()))
    for i, x in enumerate(per_stream):
        wav[i, 0, : x.shape[0]] = x
    return AudioChunk(wav, lengths)
