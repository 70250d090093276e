"""``Codec``: the speech codec as one object, encoding with ``CodecEncoder`` and decoding with
``Code2Wav`` from the same tokenizer folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from omnispeech.audio import load_audio
from omnispeech.codec import CodecEncoder
from omnispeech.codes import save_codes
from omnispeech.errors import CheckpointError
from omnispeech.vocoder import AudioChunk, Code2Wav


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
        name_or_path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> Codec:
        """Load both halves of a Qwen3-TTS-Tokenizer-12Hz folder."""
        encoder = CodecEncoder.from_pretrained(name_or_path, dtype=dtype, device=device)
        decoder = Code2Wav.from_pretrained(name_or_path, dtype=dtype, device=device)
        return cls(encoder, decoder, Path(str(name_or_path).rstrip("/")).name)

    @property
    def sample_rate(self) -> int:
        """Audio samples per second (24000)."""
        return self.encoder.sample_rate

    @property
    def frame_rate(self) -> float:
        """Code frames per second (12.5)."""
        return self.encoder.cfg.frame_rate

    def encode(
        self, wav: torch.Tensor | np.ndarray, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav [B, 1, S]`` at :attr:`sample_rate` -> ``(codes [B, K, T], frames [B])``."""
        return self.encoder.encode(wav, lengths)

    def decode(self, codes: torch.Tensor, lengths: torch.Tensor | None = None) -> AudioChunk:
        """``codes [B, K, T]`` -> audio ``[B, 1, S]`` with valid samples per item."""
        return self.decoder.decode(codes, lengths)

    def encode_file(self, path: str | Path) -> torch.Tensor:
        """Any audio file (resampled, downmixed) -> codes ``[K, T]``."""
        wav = load_audio(path, self.sample_rate)
        return self.encoder.encode(torch.from_numpy(wav))[0][0]

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
