"""The recogniser being trained: AuT encoder + projector, Qwen3 decoder, CTC head.

The parts are the pipeline's own modules (:class:`~omnispeech.encoder.model.AuT`,
:class:`~omnispeech.core.Decoder`), so the export is a Qwen3-ASR folder that
:class:`~omnispeech.pipelines.ASR` loads through the same code as the released checkpoints.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

from omnispeech.core import Decoder
from omnispeech.encoder import AudioEncoder
from omnispeech.pipelines.asr import ASR, ASRConfig
from omnispeech.pipelines.asr_joint import DEFAULT_CTC_WEIGHT
from omnispeech.pipelines.languages import language_name
from omnispeech.training.asr_config import ASRModelConfig
from omnispeech.training.asr_data import IGNORE, ASRBatch


class TrainableASR(nn.Module):
    """Encoder, decoder and CTC head, with the training losses.

    Args:
        cfg: the model shape and loss weights.
    """

    def __init__(self, cfg: ASRModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = AudioEncoder(cfg.encoder_config())
        self.decoder = Decoder(cfg.decoder_config())
        # One class per vocabulary entry plus the blank, which is the last class.
        self.ctc_head = nn.Linear(cfg.decoder_dim, cfg.vocab_size + 1)
        self.apply(_init_weights)
        _init_conv_stem(self.encoder.net)
        _init_blank(self.ctc_head, self.blank_id)

    @property
    def blank_id(self) -> int:
        return self.cfg.vocab_size

    def forward(self, batch: ASRBatch) -> dict[str, torch.Tensor]:
        """Losses of one batch: ``total``, ``attention`` (cross-entropy per answer token),
        ``ctc`` (per target token) and ``accuracy`` (next-token, answer positions)."""
        tokens = self.encoder.net.forward_masked(batch.features, batch.feature_lengths)
        n_tok = torch.tensor(
            [self.encoder.cfg.num_tokens(int(n)) for n in batch.feature_lengths.tolist()],
            device=tokens.device,
        )
        valid = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < n_tok[:, None]
        embeds = self.decoder.embed_tokens(batch.input_ids)
        # Row-major order of both masks matches: audio placeholders of example b, in order,
        # receive the valid encoder tokens of example b, in order.
        embeds = embeds.masked_scatter(batch.audio_mask[..., None], tokens[valid].to(embeds))
        hidden = self.decoder(embeds)
        keep = batch.labels != IGNORE
        logits = self.decoder.logits(hidden[keep])
        targets = batch.labels[keep]
        attention = F.cross_entropy(logits, targets, label_smoothing=self.cfg.label_smoothing)
        accuracy = (logits.argmax(-1) == targets).float().mean()
        ctc = tokens.new_zeros(())
        if self.cfg.ctc_weight > 0:
            log_probs = F.log_softmax(self.ctc_head(tokens).float(), dim=-1)
            ctc = F.ctc_loss(
                log_probs.transpose(0, 1),
                batch.ctc_targets,
                n_tok,
                batch.ctc_lengths,
                blank=self.blank_id,
                reduction="mean",
                zero_infinity=True,  # a transcript longer than the audio's tokens: no gradient
            )
        total = attention + self.cfg.ctc_weight * ctc
        return {"total": total, "attention": attention, "ctc": ctc, "accuracy": accuracy}

    def to_pipeline(self, tokenizer: Tokenizer, languages: list[str]) -> ASR:
        """An :class:`ASR` sharing these weights (for validation and export)."""
        end = tokenizer.token_to_id("<|im_end|>")
        eos = (tokenizer.token_to_id("<|endoftext|>"), end)
        names = tuple(language_name(code) for code in languages)
        return ASR(
            self.encoder,
            self.decoder,
            None,
            tokenizer,
            ASRConfig(eos_token_ids=eos, languages=names, ctc_weight=DEFAULT_CTC_WEIGHT),
            ctc_head=self.ctc_head,
        )

    def export(self, folder: str | Path, tokenizer: Tokenizer, languages: list[str]) -> Path:
        """Write a Qwen3-ASR folder (bfloat16 weights, as released) with the tokenizer."""
        was_training = self.training
        self.eval()
        self.to_pipeline(tokenizer, languages).save_pretrained(folder, dtype=torch.bfloat16)
        self.train(was_training)
        return Path(folder)


def _init_conv_stem(net: nn.Module) -> None:
    """Start the conv stem at unit scale. The sinusoids added after ``conv_out`` have a standard
    deviation of about 0.5; with PyTorch's default initialisation the stem's output measured
    0.009 on log-mel input (each conv and GELU shrinks it), so the transformer saw positions,
    not sound, and recognition did not start learning in 1000 steps. He initialisation keeps
    the scale through the GELUs, and ``conv_out`` is scaled for an output of about 1."""
    for conv in (net.conv2d1, net.conv2d2, net.conv2d3):
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)
    nn.init.normal_(net.conv_out.weight, std=4.0 / net.conv_out.in_features**0.5)


def _init_blank(head: nn.Linear, blank: int) -> None:
    """Start the CTC head saying blank half of the time (bias log(V) against V near-zero
    logits). From a zero bias, the first thing CTC learns is to emit blank nearly everywhere,
    and the encoder learned it by adding one large constant to every token, which its final
    layer norm turns into an output that no longer depends on the sound. Measured with the
    tiny recipe (600 entries) on 8 utterances: from a zero bias the CTC loss sat at its
    input-independent floor (3.11 per token) for 300 steps; with a blank bias of 5 it broke
    away after 120."""
    with torch.no_grad():
        head.bias[blank] = math.log(head.out_features - 1)


def _init_weights(module: nn.Module) -> None:
    # Small normal initialisation, as the released models were trained from: the default
    # (Kaiming uniform) makes a 4-layer decoder's first steps needlessly unstable.
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
