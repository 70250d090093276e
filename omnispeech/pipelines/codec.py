"""``Codec``: the speech codec as one object, encoding with ``CodecEncoder`` and decoding with
``Code2Wav`` from the same tokenizer folder.

Files are encoded as a stream: read block by block (resampled to 24 kHz and downmixed on the
way), pushed through the streaming encoder, so memory stays bounded by one block plus the
encoder's KV cache whatever the file's length, and the codes equal encoding the whole file at
once.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from omnispeech.audio import iter_audio_blocks
from omnispeech.bundled import DEFAULTS, default_model
from omnispeech.codec import CodecEncoder
from omnispeech.codes import save_codes
from omnispeech.errors import AudioWarning, CheckpointError
from omnispeech.vocoder import AudioChunk, Code2Wav

# Seconds of the file read per block by `encode_file`: ~1 MB of 24 kHz float32.
BLOCK_SECONDS = 10.0
# |sample| from which a sample counts as at full scale: int16 full scale is 32767 / 32768, and
# the resampler's ripple moves a clipped plateau by up to ~1e-3 either way.
FULL_SCALE = 0.999
# Share of samples at full scale above which the audio is reported as clipped (0.1 %).
CLIPPED_FRACTION = 1e-3


@dataclasses.dataclass
class _Levels:
    """Running level statistics of a stream, for :class:`AudioWarning` s."""

    samples: int = 0
    at_full_scale: int = 0
    beyond: int = 0  # samples beyond +-1, clipped to +-1 before encoding
    peak: float = 0.0

    def clip(self, block: np.ndarray) -> np.ndarray:
        """Count ``block``'s levels; return it with samples beyond +-1 clipped to +-1."""
        level = np.abs(block)
        beyond = int(np.count_nonzero(level > 1.0))
        self.samples += block.shape[0]
        self.at_full_scale += int(np.count_nonzero(level >= FULL_SCALE))
        self.beyond += beyond
        self.peak = max(self.peak, float(level.max(initial=0.0)))
        # The encoder was trained on audio in [-1, 1], as PCM files hold it.
        return np.clip(block, -1.0, 1.0) if beyond else block

    def warnings(self, where: str) -> list[str]:
        if self.samples and self.peak == 0.0:
            return [f"{where}: the audio is digital silence (every sample is 0)"]
        share = self.at_full_scale / max(1, self.samples)
        if self.beyond:
            return [
                f"{where}: {self.beyond} samples beyond full scale (peak {self.peak:.3g}) were "
                "clipped to +-1; the codes may sound distorted"
            ]
        if share > CLIPPED_FRACTION:
            return [
                f"{where}: {share:.1%} of samples are at full scale: the audio looks clipped "
                "and the codes may sound distorted"
            ]
        return []


class Codec:
    """Audio <-> codes with a Qwen3-TTS-Tokenizer-12Hz folder (24 kHz, 12.5 Hz, 16 codebooks).

    Args:
        encoder: waveform -> codes.
        decoder: codes -> waveform.
        name: the model's name, recorded in codes files.
    """

    def __init__(self, encoder: CodecEncoder, decoder: Code2Wav, name: str) -> None:
        e, d = encoder.cfg, decoder.cfg
        if (e.sample_rate, e.num_valid_quantizers, e.codebook_size) != (
            d.sample_rate,
            d.num_quantizers,
            d.codebook_size,
        ) or abs(e.frame_rate - d.frame_rate) > 1e-9:
            raise CheckpointError("the codec's encoder and decoder do not describe the same codes")
        self.encoder = encoder
        self.decoder = decoder
        self.name = name

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> Codec:
        """Load both halves of a codec folder in the Qwen3-TTS-Tokenizer-12Hz layout (None: the
        bundled codec).

        Raises:
            CheckpointError: missing folder, wrong kind of checkpoint, mismatched keys, or no
                name given and no bundled codec in this installation.
        """
        if name_or_path is None:
            default_model("codec")  # one clear line when this installation ships none
            name_or_path = DEFAULTS["codec"]  # by name, which the codes files record
        encoder = CodecEncoder.from_pretrained(name_or_path, dtype=dtype, device=device)
        decoder = Code2Wav.from_pretrained(name_or_path, dtype=dtype, device=device)
        return cls(encoder, decoder, Path(str(name_or_path).rstrip("/")).name)

    @property
    def sample_rate(self) -> int:
        """Audio samples per second (24000)."""
        return self.encoder.sample_rate

    @property
    def frame_rate(self) -> float:
        """Code frames per second (12.5 for the released tokenizer, 25 for the bundled codec)."""
        return self.encoder.cfg.frame_rate

    def encode(
        self, wav: torch.Tensor | np.ndarray, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav [B, 1, S]`` at :attr:`sample_rate` -> ``(codes [B, K, T], frames [B])``."""
        return self.encoder.encode(wav, lengths)

    def decode(self, codes: torch.Tensor, lengths: torch.Tensor | None = None) -> AudioChunk:
        """``codes [B, K, T]`` -> audio ``[B, 1, S]`` with valid samples per item."""
        return self.decoder.decode(codes, lengths)

    def encode_file(
        self,
        path: str | Path,
        block_seconds: float = BLOCK_SECONDS,
        progress: Callable[[float], None] | None = None,
    ) -> torch.Tensor:
        """Encode an audio file of any length -> codes ``[K, T]`` (int64, on the CPU).

        The file is read ``block_seconds`` at a time, resampled to 24 kHz and downmixed to
        mono, and streamed through the encoder; the codes equal :meth:`encode` of the whole
        file. Samples beyond +-1 (float files) are clipped to +-1. Digital silence and clipped
        audio are encoded, with an :class:`AudioWarning`.

        Args:
            path: a file soundfile can decode (wav, flac, ogg), any rate and channel count.
            block_seconds: seconds of the file read and encoded per step (bounds memory).
            progress: called with the seconds of audio encoded after each block.

        Raises:
            AudioFileError: a missing or undecodable file.
            EmptyAudioError: a file with no samples.
            InvalidAudioError: NaN / Inf samples.
        """
        levels = _Levels()
        blocks = iter_audio_blocks(path, block_seconds, self.sample_rate)
        codes = []
        with self.encoder.streaming(1):
            for block in blocks:
                piece = torch.from_numpy(levels.clip(block))[None, None]
                codes.append(self.encoder.push(piece).cpu())
                if progress is not None:
                    progress(block.shape[0] / self.sample_rate)
            codes.append(self.encoder.flush().cpu())
        for message in levels.warnings(str(path)):
            warnings.warn(message, AudioWarning, stacklevel=2)
        return torch.cat(codes, dim=-1)[0]

    def save_codes(self, path: str | Path, codes: torch.Tensor) -> None:
        """Write ``codes [K, T]`` as a codes file with this codec's rates and name."""
        save_codes(
            path,
            codes.cpu().numpy(),
            sample_rate=self.sample_rate,
            frame_rate=self.frame_rate,
            codebook_size=self.encoder.cfg.codebook_size,
            model=self.name,
        )
