"""``AudioEncoder``: the public AuT encoder, offline (batched) and incrementally streaming."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from omnispeech.audio import StreamingLogMel, log_mel_spectrogram
from omnispeech.checkpoint import (
    CheckpointFolder,
    build_on_meta,
    load_state,
    resolve_folder,
    save_folder,
)
from omnispeech.core.streaming import StreamingModule, StreamingState
from omnispeech.encoder.config import EncoderConfig
from omnispeech.encoder.layouts import OWN_MODEL_TYPE, detect_layout
from omnispeech.encoder.model import AuT, check_features
from omnispeech.errors import EmptyAudioError, InputError


@dataclasses.dataclass(frozen=True)
class EncoderOutput:
    """Encoder tokens of a batch.

    Attributes:
        tokens: ``[B, N_max, D]`` at 13 tokens/s (76.9 ms each); zero past ``lengths``.
        lengths: valid tokens per audio ``[B]``.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor


@dataclasses.dataclass
class _EncoderStream(StreamingState):
    """Per-batch streaming state: at most one chunk of frames and one window of embeddings.

    ``pending`` holds mel frames of the chunk being filled ``[B, n_mels, < chunk]``;
    ``window`` the embedded chunks of the window being filled ``[B, < 8 * 13, d_model]``.
    """

    pending: torch.Tensor | None = None
    window: torch.Tensor | None = None
    frames_seen: int = 0
    mels: list[StreamingLogMel] = dataclasses.field(default_factory=list)


class AudioEncoder(StreamingModule[_EncoderStream]):
    """The AuT audio encoder of Qwen3-Omni / Qwen3-ASR.

    Offline: ``encoder(features, lengths)`` on a padded batch. Streaming::

        with encoder.streaming(batch_size=1):
            for piece in pieces:                 # any size, e.g. 100 ms of 16 kHz audio
                tokens = encoder.push_audio(piece)   # [1, n, D], n >= 0: the final ones
            tokens = encoder.flush()

    A token is final once the 8-s attention window holding it is complete (or the stream
    ends); each push costs work bounded by one window, whatever the history.

    Args:
        cfg: the encoder shape.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = AuT(cfg)

    @property
    def out_dim(self) -> int:
        """Token width D (the LLM hidden size when the projection is present)."""
        return self.net.out_dim

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> AudioEncoder:
        """Load the encoder of a Qwen3-Omni, Qwen3-ASR (either layout) or omnispeech folder.

        Only the encoder's tensors are read, however large the checkpoint.

        Raises:
            CheckpointError: missing folder, wrong kind of checkpoint, or mismatched keys.
        """
        folder = CheckpointFolder(resolve_folder(name_or_path))
        layout = detect_layout(folder)
        model = build_on_meta(lambda: cls(layout.config))
        state = layout.read(folder, dtype)
        load_state(model.net, state, f"{folder.path} ({layout.kind} audio encoder)")
        return model.to(device=device, dtype=dtype).eval()

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` + ``model.safetensors`` (keys under ``encoder.``)."""
        config = {"model_type": OWN_MODEL_TYPE, "encoder": self.cfg.to_dict()}
        tensors = {f"encoder.{k}": v for k, v in self.net.state_dict().items()}
        save_folder(path, config, tensors)
        (Path(path) / "omnispeech.json").write_text(json.dumps({"component": "encoder"}) + "\n")

    # -- offline ------------------------------------------------------------------------------
    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        """Encode a padded batch of log-mel features.

        Args:
            features: ``[B, n_mels, T]`` log-mel (100 frames/s), as made by
                :func:`omnispeech.audio.log_mel_spectrogram`.
            lengths: valid frames per audio ``[B]``; None means all ``T``.

        Returns:
            :class:`EncoderOutput` with tokens ``[B, N_max, D]``.
        """
        lengths = check_features(features, lengths, self.cfg.num_mel_bins)
        tokens = self.net(features.to(self._dtype()), lengths)
        n_tok = torch.tensor([self.cfg.num_tokens(int(n)) for n in lengths])
        return EncoderOutput(tokens, n_tok)

    @torch.inference_mode()
    def encode_audio(self, wav: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Encode one 16 kHz mono waveform ``[S]`` -> tokens ``[N, D]``."""
        feats = log_mel_spectrogram(torch.as_tensor(wav), self.cfg.num_mel_bins)
        return self(feats[None].to(self._device())).tokens[0]

    def _dtype(self) -> torch.dtype:
        return self.net.conv_out.weight.dtype

    def _device(self) -> torch.device:
        return self.net.conv_out.weight.device

    # -- streaming ----------------------------------------------------------------------------
    def _init_streaming_state(self, batch_size: int) -> _EncoderStream:
        return _EncoderStream(batch_size)

    def _state(self) -> _EncoderStream:
        if self.streaming_state is None:
            raise RuntimeError("push/flush need an active `with encoder.streaming(batch):` block")
        return self.streaming_state

    @torch.inference_mode()
    def push_audio(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Feed 16 kHz mono samples ``[B, S]`` (or ``[S]`` for batch 1) -> final tokens
        ``[B, n, D]``.

        The log-mel floor (max - 8 in log10 units) uses the running maximum, so audio whose
        quiet part precedes a much louder one (over 80 dB of range) differs slightly from the
        offline features; see :class:`omnispeech.audio.StreamingLogMel`.
        """
        state = self._state()
        x = torch.as_tensor(samples, dtype=torch.float32)
        if x.dim() == 1:
            x = x[None]
        if x.dim() != 2 or x.shape[0] != state.batch_size:
            raise InputError(f"samples must be [{state.batch_size}, S], got {tuple(x.shape)}")
        if not state.mels:
            state.mels = [StreamingLogMel(self.cfg.num_mel_bins) for _ in range(state.batch_size)]
        frames = torch.stack(
            [torch.as_tensor(m.push(row.numpy())) for m, row in zip(state.mels, x, strict=True)]
        )
        return self.push_features(frames)

    @torch.inference_mode()
    def push_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Feed log-mel frames ``[B, n_mels, t]`` (t >= 0) -> final tokens ``[B, n, D]``."""
        state = self._state()
        cfg = self.cfg
        B = state.batch_size
        if frames.dim() != 3 or frames.shape[0] != B or frames.shape[1] != cfg.num_mel_bins:
            raise InputError(
                f"frames must be [{B}, {cfg.num_mel_bins}, t], got {tuple(frames.shape)}"
            )
        frames = frames.to(device=self._device(), dtype=self._dtype())
        state.frames_seen += frames.shape[-1]
        if state.pending is not None:
            frames = torch.cat([state.pending, frames], dim=-1)
        cf = cfg.chunk_frames
        n_full = frames.shape[-1] // cf
        state.pending = frames[..., n_full * cf :]
        out = [self._empty(B)]
        if n_full:
            chunks = frames[..., : n_full * cf].reshape(B, cfg.num_mel_bins, n_full, cf)
            emb = self.net.embed_chunks(chunks.permute(0, 2, 1, 3).reshape(B * n_full, -1, cf))
            emb = emb.reshape(B, n_full * emb.shape[1], -1)
            window = emb if state.window is None else torch.cat([state.window, emb], dim=1)
            per_window = cfg.chunks_per_window * cfg.tokens_per_chunk
            n_done = window.shape[1] // per_window
            if n_done:
                done = window[:, : n_done * per_window].reshape(B * n_done, per_window, -1)
                out.append(self.net.encode_windows(done).reshape(B, n_done * per_window, -1))
            state.window = window[:, n_done * per_window :]
        return torch.cat(out, dim=1)

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """End the streams: encode the partial chunk and window -> last tokens ``[B, n, D]``.

        The state is reset, so the same context can encode a new stream afterwards.
        """
        state = self._state()
        B = state.batch_size
        tail = [torch.as_tensor(m.flush()) for m in state.mels]
        # The last feature frames can complete a window: its tokens come out here.
        done = self.push_features(torch.stack(tail)) if tail else self._empty(B)
        out = self._empty(B)
        if state.frames_seen == 0:
            self.reset_streaming()
            raise EmptyAudioError("the stream ended before a single feature frame (10 ms)")
        window = state.window
        if state.pending is not None and state.pending.shape[-1]:
            r = state.pending.shape[-1]
            width = self.cfg.chunk_frames
            if self.cfg.pad_short_batches_to_longest and state.frames_seen < width:
                width = r  # Qwen3-Omni pads a lone short chunk only to its own length
            chunk = torch.nn.functional.pad(state.pending, (0, width - r))
            emb = self.net.embed_chunks(chunk)[:, : (r + 7) // 8]
            window = emb if window is None else torch.cat([window, emb], dim=1)
        if window is not None and window.shape[1]:
            out = self.net.encode_windows(window)
        self.reset_streaming()
        return torch.cat([done, out], dim=1)

    def _empty(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, 0, self.out_dim, device=self._device(), dtype=self._dtype())
