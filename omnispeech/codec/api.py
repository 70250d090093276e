"""``CodecEncoder``: the public codec encoder (waveform -> codes), loaded unchanged.

Layouts (folder: tensor prefix):

- Qwen3-TTS-Tokenizer-12Hz (``qwen3_tts_tokenizer_12hz``): ``encoder.``; config
  ``encoder_config`` plus ``encoder_valid_num_quantizers`` (16 of its 32 codebooks are used).
- omnispeech's own ``CodecEncoder.save_pretrained``: ``encoder.``; config under ``codec_encoder``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from omnispeech.checkpoint import (
    CheckpointFolder,
    build_on_meta,
    load_state,
    resolve_folder,
    save_folder,
)
from omnispeech.codec.config import CodecEncoderConfig
from omnispeech.codec.model import CodecEncoderNet
from omnispeech.core.streaming import StreamingModule, StreamingState
from omnispeech.errors import CheckpointError, EmptyAudioError, InputError

OWN_MODEL_TYPE = "omnispeech_codec_encoder"


@dataclasses.dataclass
class _Stream(StreamingState):
    samples: int = 0  # samples pushed per stream so far


class CodecEncoder(StreamingModule[_Stream]):
    """Waveform -> residual codes (the Qwen3-TTS 12 Hz tokenizer's encoder).

    Offline: ``encoder.encode(wav [B, 1, S], lengths)`` -> ``(codes [B, K, T], frames [B])``
    with ``K = 16`` codebooks and ``T = ceil(S / 1920)`` frames at 12.5 frames/s (80 ms of
    24 kHz audio each); decode them with :class:`omnispeech.Code2Wav`. Streaming::

        with encoder.streaming(batch_size=1):
            for piece in pieces:               # [1, 1, n] at 24 kHz, any n >= 0
                codes = encoder.push(piece)    # [1, 16, m], m >= 0: the final codes only
            codes = encoder.flush()            # the last, partial frame (m <= 1)

    The pushed codes followed by the flushed ones equal :meth:`encode` of the whole audio: the
    encoder is causal without look-ahead, so a frame is final as soon as its last (1920th)
    sample arrives. Each push costs work proportional to its samples, plus attention over the
    frames seen so far (the transformer's KV cache).

    Args:
        cfg: the encoder shape.
        tile_frames: offline encodes of longer clips stream through in tiles of this many
            frames (bounds memory; the codes do not depend on it).
    """

    def __init__(self, cfg: CodecEncoderConfig, tile_frames: int = 64) -> None:
        super().__init__()
        if tile_frames < 1:
            raise ValueError("tile_frames must be >= 1")
        self.cfg = cfg
        self.net = CodecEncoderNet(cfg)
        # Frames per tile of an offline encode (64 frames = 5.12 s); speed and memory only.
        self.tile_frames = tile_frames

    @property
    def sample_rate(self) -> int:
        """Input samples per second (24000)."""
        return self.cfg.sample_rate

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> CodecEncoder:
        """Load from a Qwen3-TTS-Tokenizer-12Hz or omnispeech folder (reads ``encoder.*`` only).

        Raises:
            CheckpointError: missing folder, wrong kind of checkpoint, or mismatched keys.
        """
        folder = CheckpointFolder(resolve_folder(name_or_path))
        cfg_json = folder.config
        model_type = cfg_json.get("model_type", "")
        if model_type == OWN_MODEL_TYPE:
            cfg = CodecEncoderConfig.from_dict(cfg_json["codec_encoder"])
        elif model_type == "qwen3_tts_tokenizer_12hz" or "encoder_config" in cfg_json:
            cfg = CodecEncoderConfig.from_tts_tokenizer(cfg_json)
        else:
            raise CheckpointError(
                f"{folder.path}: no codec encoder here (model_type {model_type!r}); expected a "
                "Qwen3-TTS-Tokenizer-12Hz folder or an omnispeech codec encoder"
            )
        model = build_on_meta(lambda: cls(cfg))
        load_state(model.net, folder.read("encoder.", dtype), f"{folder.path} (codec encoder)")
        return model.to(device=device, dtype=dtype).eval()

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` + ``model.safetensors`` (released names under ``encoder.``)."""
        config = {"model_type": OWN_MODEL_TYPE, "codec_encoder": self.cfg.to_dict()}
        save_folder(path, config, {f"encoder.{k}": v for k, v in self.net.state_dict().items()})

    # -- streaming ----------------------------------------------------------------------------
    def _init_streaming_state(self, batch_size: int) -> _Stream:
        return _Stream(batch_size)

    def _state(self) -> _Stream:
        if self.streaming_state is None:
            raise RuntimeError("push/flush need an active `with encoder.streaming(batch):` block")
        return self.streaming_state

    @torch.inference_mode()
    def push(self, wav: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Feed the next samples of every stream and get the codes now final.

        Args:
            wav: ``[B, 1, n]`` (or ``[B, n]``) 24 kHz float samples in [-1, 1], any ``n >= 0``;
                ``B`` is the ``streaming()`` batch size.

        Returns:
            ``codes [B, K, m]`` int64 on the model's device, ``m >= 0``.

        Raises:
            InputError: wrong shape or non-finite samples.
        """
        state = self._state()
        x = self._check(wav)
        if x.shape[0] != state.batch_size:
            raise InputError(
                f"audio must be [{state.batch_size}, 1, n] (the streaming batch), got "
                f"{tuple(x.shape)}"
            )
        state.samples += x.shape[-1]
        return self.net.quantize(self.net.latent(self._to_model(x)))

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """End every stream -> the remaining codes ``[B, K, m]`` (the last partial frame,
        ``m <= 1``; ``m = 0`` when the samples filled whole frames or none were pushed).

        The state is reset, so the same context can encode new streams afterwards.
        """
        self._state()
        codes = self.net.quantize(self.net.flush_latent())
        self.reset_streaming()
        return codes

    def _to_model(self, x: torch.Tensor) -> torch.Tensor:
        w = self.net.downsample.conv.weight
        return x.to(device=w.device, dtype=w.dtype)

    def _check(self, wav: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``[B, 1, S]`` / ``[B, S]`` / ``[S]`` float audio -> ``[B, 1, S]`` float32 (checked)."""
        x = torch.as_tensor(wav, dtype=torch.float32)
        if x.dim() == 1:
            x = x[None, None]
        elif x.dim() == 2:
            x = x[:, None]
        if x.dim() != 3 or x.shape[1] != 1:
            raise InputError(f"audio must be [B, 1, S] mono, got shape {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise InputError("audio contains NaN or Inf samples")
        return x

    # -- offline ------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(
        self, wav: torch.Tensor | np.ndarray, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch of 24 kHz mono audio.

        Args:
            wav: ``[B, 1, S]`` (or ``[B, S]``, or ``[S]`` for one clip), float in [-1, 1].
            lengths: valid samples per clip ``[B]``; None means all ``S``.

        Returns:
            ``codes [B, K, T]`` int64 (frames past a clip's length are ``-1``) and the valid
            frames per clip ``[B]`` (``ceil(length / 1920)``).

        Each clip is encoded alone at its own length: the encoder is causal, but its last
        partial frame would otherwise see the batch's padding.

        Clips longer than :attr:`tile_frames` frames stream through the encoder tile by tile
        (see :meth:`push`), which bounds memory and gives the same codes.

        Raises:
            InputError: wrong shape, non-finite samples, bad lengths.
            EmptyAudioError: a clip without samples.
            RuntimeError: called inside ``streaming()`` (use :meth:`push` there).
        """
        if self.is_streaming:
            raise RuntimeError("inside streaming(): use push() and flush(), not encode()")
        x = self._check(wav)
        b, _, s = x.shape
        n = torch.full((b,), s) if lengths is None else torch.as_tensor(lengths).long().cpu()
        if n.shape != (b,) or bool((n > s).any()) or bool((n < 0).any()):
            raise InputError(f"lengths must be {b} values in [0, {s}], got {n.tolist()}")
        if bool((n == 0).any()):
            raise EmptyAudioError("a clip has no samples: nothing to encode")
        frames = torch.tensor([self.cfg.num_frames(int(k)) for k in n])
        codes = torch.full((b, self.cfg.num_valid_quantizers, int(frames.max())), -1)
        for i in range(b):
            clip = self._to_model(x[i : i + 1, :, : int(n[i])])
            codes[i, :, : int(frames[i])] = self._encode_clip(clip)
        return codes, frames

    def _encode_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """``[1, 1, S]`` -> codes ``[K, T]`` on the CPU.

        A long clip streams through in tiles of ``tile_frames`` frames: the first conv's
        activations of a whole minute would take ~1.5 GB, a tile's a few MB, and the codes are
        the same (streaming is exact).
        """
        tile = self.tile_frames * self.cfg.hop_length
        if clip.shape[-1] <= tile:
            return self.net(clip)[0].cpu()
        parts = []
        with self.streaming(1):
            for start in range(0, clip.shape[-1], tile):
                piece = clip[..., start : start + tile]
                parts.append(self.net.quantize(self.net.latent(piece)))
            parts.append(self.net.quantize(self.net.flush_latent()))
        return torch.cat(parts, dim=-1)[0].cpu()
