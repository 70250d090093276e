"""The trainable codec: inference encoder + trainable split RVQ + Code2Wav decoder.

The encoder and decoder are the inference modules themselves (``CodecEncoderNet`` and
``Code2Wav`` of the tts12hz flavor), run with autograd; only the quantizer differs while
training. :meth:`TrainableCodec.export` writes a folder in the Qwen3-TTS-Tokenizer-12Hz layout,
so ``Codec.from_pretrained`` (and ``CodecEncoder`` / ``Code2Wav`` alone) load a trained model
exactly as they load the released tokenizer.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from omnispeech.checkpoint import CheckpointFolder, load_state, save_folder
from omnispeech.codec import CodecEncoderConfig
from omnispeech.codec.model import CodecEncoderNet
from omnispeech.errors import ConfigError
from omnispeech.training.config import CodecModelConfig, CodecRunConfig
from omnispeech.training.quantizer import QuantizedLatent, TrainableSplitQuantizer
from omnispeech.vocoder import Code2Wav
from omnispeech.vocoder.config import Code2WavConfig

EXPORT_MODEL_TYPE = "qwen3_tts_tokenizer_12hz"


def tokenizer_config(cfg: CodecModelConfig) -> dict[str, Any]:
    """The ``config.json`` of an exported codec, in the released tokenizer's layout."""
    heads = cfg.encoder_heads
    encoder = {
        "sampling_rate": cfg.sample_rate,
        "frame_rate": cfg.frame_rate,
        "audio_channels": 1,
        "num_filters": cfg.encoder_filters,
        "upsampling_ratios": list(cfg.encoder_ratios),
        "kernel_size": 7,
        "last_kernel_size": 3,
        "residual_kernel_size": 3,
        "dilation_growth_rate": 2,
        "num_residual_layers": 1,
        "compress": 2,
        "use_causal_conv": True,
        "use_conv_shortcut": False,
        "pad_mode": "constant",
        "hidden_size": cfg.encoder_dim,
        "num_hidden_layers": cfg.encoder_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "head_dim": cfg.encoder_dim // heads,
        "intermediate_size": 4 * cfg.encoder_dim,
        "norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "codebook_size": cfg.codebook_size,
        "codebook_dim": cfg.encoder_dim // 2,
        "vector_quantization_hidden_dimension": cfg.encoder_dim // 2,
        "num_quantizers": cfg.num_codebooks,
        "num_semantic_quantizers": 1,
    }
    d_heads = cfg.decoder_heads
    decoder = {
        "codebook_size": cfg.codebook_size,
        # The dequantised width equals the encoder's latent width, so both halves share the
        # quantizer's projections.
        "codebook_dim": cfg.encoder_dim,
        "hidden_size": cfg.decoder_hidden,
        "num_attention_heads": d_heads,
        "num_key_value_heads": d_heads,
        "head_dim": cfg.decoder_head_dim or cfg.decoder_hidden // d_heads,
        "intermediate_size": 2 * cfg.decoder_hidden,
        "num_hidden_layers": cfg.decoder_layers,
        "sliding_window": cfg.decoder_window,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "latent_dim": cfg.decoder_latent,
        "num_quantizers": cfg.num_codebooks,
        "num_semantic_quantizers": 1,
        "upsampling_ratios": list(cfg.upsampling_ratios),
        "upsample_rates": list(cfg.upsample_rates),
        "decoder_dim": cfg.decoder_dim,
    }
    return {
        "model_type": EXPORT_MODEL_TYPE,
        "input_sample_rate": cfg.sample_rate,
        "output_sample_rate": cfg.sample_rate,
        "encode_downsample_rate": cfg.hop_length,
        "decode_upsample_rate": cfg.hop_length,
        "encoder_valid_num_quantizers": cfg.num_codebooks,
        "encoder_config": encoder,
        "decoder_config": decoder,
        "trained_with": "omnispeech train codec",
    }


def component_configs(cfg: CodecModelConfig) -> tuple[CodecEncoderConfig, Code2WavConfig]:
    """The encoder and decoder configs that the exported folder will load as."""
    full = tokenizer_config(cfg)
    return CodecEncoderConfig.from_tts_tokenizer(full), Code2WavConfig.from_tts_tokenizer(full)


@dataclasses.dataclass(frozen=True)
class CodecOutput:
    """One forward pass of the trainable codec.

    Attributes:
        wav: ``[B, 1, S]`` the reconstruction (``S`` = frames * hop, at least the input's).
        codes: ``[B, K, T]`` (``-1`` where dropped).
        commitment: scalar commitment loss.
        latent: ``[B, D, T]`` the dequantised latent the decoder read.
    """

    wav: torch.Tensor
    codes: torch.Tensor
    commitment: torch.Tensor
    latent: torch.Tensor


class TrainableCodec(nn.Module):
    """``wav [B, 1, S]`` -> reconstruction ``[B, 1, hop * ceil(S / hop)]`` through the codes.

    Args:
        cfg: the codec's shape.
        run: quantizer settings (EMA decay, k-means, dropout, dead codes).
    """

    def __init__(self, cfg: CodecModelConfig, run: CodecRunConfig) -> None:
        super().__init__()
        self.cfg = cfg
        enc_cfg, dec_cfg = component_configs(cfg)
        self.encoder = CodecEncoderNet(enc_cfg)
        self.decoder = Code2Wav(dec_cfg)
        self.quantizer = TrainableSplitQuantizer(
            self.encoder.quantizer,
            cfg.codebook_size,
            cfg.num_codebooks,
            run.ema_decay,
            run.kmeans_iters,
            run.quantizer_dropout,
            run.dead_code_threshold,
        )
        # The decoder's own codebooks are written at export, never trained directly.
        self.decoder.quantizer.requires_grad_(False)
        # Set by finetune_decoder: the encoder and codebooks are frozen, only the decoder learns.
        self.decoder_only = False
        self._init_weights()

    def _init_weights(self) -> None:
        """Fresh weights for training (the inference modules start from zeros/ones)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)):
                fan_in = module.weight[0].numel() if module.weight.dim() > 1 else 1
                if isinstance(module, nn.ConvTranspose1d):
                    fan_in = module.weight.shape[0] * module.weight.shape[2] // module.stride[0]
                nn.init.normal_(module.weight, std=1.0 / math.sqrt(fan_in))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for name, param in self.named_parameters():
            # LayerScale and ConvNeXt gamma start small so each block begins near identity.
            if name.endswith((".scale", ".gamma")):
                nn.init.constant_(param, 0.01)
        with torch.no_grad():
            # The decoder's residual units also start near identity (their last conv small),
            # and its output conv small: the released decoder clamps to [-1, 1], and an output
            # that starts saturated would get no gradient at all.
            for name, module in self.decoder.named_modules():
                if name.endswith(".conv2"):
                    module.conv.weight.mul_(0.01)
            self.decoder.decoder[-1].conv.weight.mul_(0.01)

    def finetune_decoder(self, folder: str | Path) -> None:
        """Start from the exported codec in ``folder`` and train its decoder alone.

        The encoder and both quantizers keep the exported weights and codebooks (frozen, in
        eval mode), so every code made with that codec, e.g. a text-to-speech model's training
        data, means the same after the fine-tune; only the decoder's weights move.

        Raises:
            ConfigError: ``folder`` is not an exported codec of this model shape.
            CheckpointError: its weights do not match.
        """
        ckpt = CheckpointFolder(folder)
        expected = tokenizer_config(self.cfg)
        for part in ("encoder_config", "decoder_config"):
            theirs = ckpt.config.get(part)
            if not isinstance(theirs, dict):
                raise ConfigError(
                    f"{folder}: not an exported codec (no {part} in its config.json); a TTS "
                    "folder keeps its codec in speech_tokenizer/"
                )
            diff = sorted(k for k, v in expected[part].items() if theirs.get(k) != v)
            if diff:
                raise ConfigError(
                    f"{folder}: its {part} differs from the config's model section in "
                    f"{', '.join(diff)}; fine-tune with the model section it was trained with"
                )
        load_state(self.encoder, ckpt.read("encoder."), f"{folder} (encoder)")
        load_state(self.decoder, ckpt.read("decoder."), f"{folder} (decoder)")
        self.encoder.requires_grad_(False)
        self.quantizer.requires_grad_(False)
        self.decoder.quantizer.requires_grad_(False)
        self.decoder_only = True
        self.train(self.training)

    def train(self, mode: bool = True) -> TrainableCodec:
        super().train(mode)
        if self.decoder_only:
            # Frozen parts stay in eval mode: no EMA codebook updates, no quantizer dropout.
            self.encoder.eval()
            self.quantizer.eval()
        return self

    def quantize(self, wav: torch.Tensor) -> QuantizedLatent:
        """``wav [B, 1, S]`` -> the quantized latent and codes."""
        return self.quantizer(self.encoder.latent(wav))

    def forward(self, wav: torch.Tensor) -> CodecOutput:
        if self.decoder_only:
            # The inference encoder and dequantizer: exactly the codes and latent the exported
            # codec makes, so the decoder learns to decode what it will be given.
            with torch.no_grad():
                codes = self.encoder(wav)
                latent = self.decoder.quantizer(codes)
            return CodecOutput(self.decoder.decode_latent(latent), codes, wav.new_zeros(()), latent)
        q = self.quantize(wav)
        return CodecOutput(self.decoder.decode_latent(q.latent), q.codes, q.commitment, q.latent)

    @torch.no_grad()
    def export(self, path: str | Path) -> Path:
        """Write a loadable model folder (Qwen3-TTS-Tokenizer-12Hz layout) and return it."""
        if not self.decoder_only:  # a fine-tune keeps the codebooks it was loaded with
            self.quantizer.export_encoder()
            self.quantizer.export_decoder(self.decoder.quantizer)
        tensors = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        tensors.update({f"decoder.{k}": v for k, v in self.decoder.state_dict().items()})
        save_folder(path, tokenizer_config(self.cfg), tensors)
        return Path(path)
