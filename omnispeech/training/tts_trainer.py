"""The TTS training loop: one process or many (``torchrun``; gloo on CPU, NCCL on GPU).

Before the first step the main process trains the text tokenizer (unless one is given, or the
text front end is espeak-ng phonemes, which are computed once into ``OUT/cache``) and
encodes every utterance once with the codec (and the speaker encoder, if any) into
``OUT/cache``; for a single stream that follows alignments, it also aligns every transcript
once (:mod:`omnispeech.training.tts_align`). Each step: a batch of cached utterances per
process in the released dual-track arrangement (or the single stream; a share
``data.in_context`` of them after an in-context reference of the same speaker), the talker's
and the code predictor's cross-entropies, gradients averaged by DDP, AdamW with warm-up and
cosine decay. Resuming is exact: a checkpoint holds the weights, the optimizer, the scheduler, the
step and every process's random state, and batches depend only on (seed, step, rank).

Output folder::

    OUT/tokenizer.json                 trained once, before the first step (kept on resume)
    OUT/cache/{train,valid}.*          codec codes per utterance (see tts_data), phoneme ids
                                       (tts_text), word times (tts_align)
    OUT/checkpoints/step-00001000.pt   training state (torch.save; read with weights_only)
    OUT/model/                         the latest export: a Qwen3-TTS folder
    OUT/log.jsonl                      losses per logged step, held-out losses per save
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from omnispeech.errors import ConfigError
from omnispeech.pipelines.codec import Codec
from omnispeech.pipelines.tts_frontend import BpeFrontend, PhonemeFrontend, TextFrontend
from omnispeech.talker import SpeakerContrast, SpeakerEncoder
from omnispeech.training.asr_data import Transcribed, read_transcribed, spread_evenly
from omnispeech.training.run_state import OneOptimizerRun
from omnispeech.training.tts_align import build_word_times, token_frames
from omnispeech.training.tts_batcher import TTSBatcher
from omnispeech.training.tts_config import TTSTrainConfig
from omnispeech.training.tts_data import (
    CodeCache,
    build_cache,
    language_key,
    tokenizer_texts,
    train_text_tokenizer,
)
from omnispeech.training.tts_model import TrainableTTS, talker_spec, talker_tokens
from omnispeech.training.tts_text import TextTrack, encode_texts, phoneme_frontend, speakable
from omnispeech.training.workers import Workers

LOSS_NAMES = ("total", "talker", "predictor", "accuracy")


class TTSTrainer(OneOptimizerRun):
    """Trains a Qwen3-TTS-architecture model described by a :class:`TTSTrainConfig`.

    Args:
        cfg: the run (``data.train`` and ``data.codec`` are required).
        out_dir: tokenizer, cache, checkpoints, exported model and log.
        workers: this process's place (default: from the ``torchrun`` environment).
        progress: progress bars while encoding the cache.
    """

    def __init__(
        self,
        cfg: TTSTrainConfig,
        out_dir: str | Path,
        workers: Workers | None = None,
        progress: bool = True,
    ) -> None:
        dc, mc = cfg.data, cfg.model
        if dc.guidance_dropout > 0 and mc.arrangement != "single":
            raise ConfigError(
                "data.guidance_dropout trains the single stream's guidance: it needs model."
                'arrangement "single"'
            )
        if cfg.sampling.guidance != 1.0 and dc.guidance_dropout == 0:
            raise ConfigError(
                "sampling.guidance above 1 needs a talker that learnt unconditioned sequences: "
                "set data.guidance_dropout (e.g. 0.15)"
            )
        if not dc.train:
            raise ConfigError("no training data: pass --train MANIFEST (or set data.train)")
        if not dc.codec or not (Path(dc.codec) / "config.json").is_file():
            raise ConfigError(
                f"no codec folder at {dc.codec!r}: pass --codec FOLDER (a speech tokenizer "
                "folder with config.json, e.g. the speech_tokenizer/ of a Qwen3-TTS model)"
            )
        self.cfg = cfg
        self.out = Path(out_dir)
        self.workers = workers or Workers.from_env()
        self.codec_dir = Path(dc.codec)
        train_items, skipped = read_transcribed(
            dc.train, dc.train_split, dc.languages, dc.max_seconds
        )
        self.tokenizer: Tokenizer | None = None
        self.frontend: TextFrontend
        if dc.text_frontend == "espeak-ipa":
            self.frontend = phoneme_frontend(train_items)
            train_items = speakable(self.frontend, train_items, skipped)
        self.languages = sorted({u.language for u in train_items})
        valid_items: list[Transcribed] = []
        if dc.valid:
            held, _ = read_transcribed(dc.valid, dc.valid_split, self.languages, dc.max_seconds)
            valid_items = spread_evenly(held, dc.valid_utterances)
        if dc.text_frontend == "bpe":
            self.tokenizer = self._tokenizer(train_items)
            self.frontend = BpeFrontend(self.tokenizer)
        codec = Codec.from_pretrained(self.codec_dir)
        num_codebooks, codebook_size = (
            codec.decoder.cfg.num_quantizers,
            codec.decoder.cfg.codebook_size,
        )
        frame_rate = codec.frame_rate
        del codec
        self.speaker_encoder: SpeakerEncoder | None = None
        if mc.speaker_encoder:
            self.speaker_encoder = SpeakerEncoder.from_pretrained(mc.speaker_encoder)
            if self.speaker_encoder.embedding_size != mc.hidden_size:
                raise ConfigError(
                    f"the speaker encoder gives {self.speaker_encoder.embedding_size} values but "
                    f"model.hidden_size is {mc.hidden_size}: they must be equal (the x-vector "
                    "enters the talker's speaker slot unprojected)"
                )
        self.train_cache = self._cache("train", train_items, skipped, progress)
        self.skipped = self.train_cache.skipped
        self.valid_cache = (
            self._cache("valid", valid_items, Counter(), progress) if valid_items else None
        )
        # Single streams that follow alignments need each token's word (text) and word times;
        # utterances the aligner could not place keep even durations (counted here).
        self.aligned_evenly = 0
        aligned = mc.arrangement == "single" and dc.alignment != "even"
        texts = [
            self._texts(name, cache, aligned, progress) if cache is not None else None
            for name, cache in (("train", self.train_cache), ("valid", self.valid_cache))
        ]
        alignments = [
            self._alignments(name, cache, text, frame_rate, progress)
            if aligned and cache is not None and text is not None
            else None
            for name, cache, text in zip(
                ("train", "valid"), (self.train_cache, self.valid_cache), texts, strict=True
            )
        ]
        if isinstance(self.frontend, PhonemeFrontend):
            tokens = talker_tokens(self.frontend.tokenizer, codebook_size, self.languages)
            text_vocab = self.frontend.vocab_size  # the inventory, whatever text_vocab_size says
        else:
            assert self.tokenizer is not None
            tokens = talker_tokens(self.tokenizer, codebook_size, self.languages)
            text_vocab = max(dc.text_vocab_size, self.tokenizer.get_vocab_size())
        spec = talker_spec(mc, tokens, num_codebooks, codebook_size, text_vocab)
        dev = self.workers.device
        torch.manual_seed(cfg.run.seed)  # every process builds the same initial weights
        self.model = TrainableTTS(spec, mc.predictor_weight).to(dev)
        oc = cfg.optim
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": oc.weight_decay}, {"params": no_decay}],
            lr=oc.lr,
            betas=oc.betas,
            weight_decay=0.0,
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        tags = {code: tokens.languages[language_key(code)] for code in self.languages}
        self.batcher, self.valid_batcher = (
            TTSBatcher(
                cache,
                text.ids,
                text.role_ids,
                tokens,
                tags,
                mc.text_modes,
                mc.auto_language,
                dc.batch_frames,
                dc.max_batch,
                mc.single_policy() if mc.arrangement == "single" else None,
                aligned_frames,
                dc.in_context,
                dc.speaker_other_clip,
                dropout,
            )
            if cache is not None and text is not None
            else None
            # The held-out loss scores the conditioned talker only: no unconditioned rows.
            for cache, text, aligned_frames, dropout in zip(
                (self.train_cache, self.valid_cache),
                texts,
                alignments,
                (dc.guidance_dropout, 0.0),
                strict=True,
            )
        )
        assert self.batcher is not None
        self.frames_per_token = speech_rate(self.train_cache, texts[0])
        if self.batcher.no_text:
            self.skipped["no_phonemes"] += self.batcher.no_text
        if self.batcher.no_text == len(self.train_cache.utterances):
            raise ConfigError("no training utterance has phonemes to read (see no_phonemes)")
        if not len(self.batcher):
            raise ConfigError(
                "no training utterance fits the single stream: every text is too long for its "
                "frames at model.min_frames_per_token; lower it"
            )
        if self.batcher.unfit:
            self.skipped["text_too_long"] += self.batcher.unfit
        for key in ("in_context", "speaker_other_clip"):
            if getattr(dc, key) > 0 and not self.batcher.with_partner:
                raise ConfigError(
                    f"data.{key} needs utterances that share speaker and language with "
                    "another one (the manifest's 'speaker' field), and no training utterance "
                    f"does; add speakers to the manifest or set data.{key} to 0"
                )
        self.step = 0
        self.stopped_by: signal.Signals | None = None  # set by fit() when a signal stopped it
        torch.manual_seed(cfg.run.seed * 7919 + 1 + self.workers.rank)
        self.ddp: nn.Module = (
            DistributedDataParallel(self.model) if self.workers.world_size > 1 else self.model
        )

    def _tokenizer(self, items: list[Transcribed]) -> Tokenizer:
        """Given, or trained once on the training transcripts by the main process."""
        if self.cfg.data.tokenizer:
            return Tokenizer.from_file(self.cfg.data.tokenizer)
        path = self.out / "tokenizer.json"
        if self.workers.is_main and not path.is_file():
            self.out.mkdir(parents=True, exist_ok=True)
            tok = train_text_tokenizer(tokenizer_texts(items), self.cfg.data.text_vocab_size)
            tmp = path.with_suffix(".tmp")
            tok.save(str(tmp))
            tmp.replace(path)
        self.workers.barrier()
        return Tokenizer.from_file(str(path))

    def _texts(self, name: str, cache: CodeCache, words: bool, progress: bool) -> TextTrack:
        """Text ids (and each token's word) of a cache; phonemes are computed once by the main
        process and read by the others from the run's cache."""
        args = (self.frontend, cache.utterances, words, self.out / "cache", name)
        if self.workers.is_main and isinstance(self.frontend, PhonemeFrontend):
            encode_texts(*args, progress=progress)
        self.workers.barrier()
        return encode_texts(*args, progress=False)

    def _alignments(
        self, name: str, cache: CodeCache, text: TextTrack, frame_rate: float, progress: bool
    ) -> list[list[int] | None]:
        """The first frame of every text token (None: spread evenly), from word times the main
        process computes once (the others wait, then read them)."""
        dc = self.cfg.data
        args = (name, cache.utterances, dc.alignment, self.out / "cache", dc.aligner, frame_rate)
        if self.workers.is_main:
            build_word_times(*args, progress=progress)
        self.workers.barrier()
        times = build_word_times(*args, progress=False)
        if name == "train":
            self.aligned_evenly = times.fallback
        assert text.words is not None
        out: list[list[int] | None] = []
        for u, ids, owners, words in zip(
            cache.utterances, text.ids, text.words, times.words, strict=True
        ):
            ok = ids is not None and words is not None
            out.append(token_frames(owners, words, u.frames) if ok else None)
        return out

    def _cache(
        self, name: str, items: list[Transcribed], skipped: Counter[str], progress: bool
    ) -> CodeCache:
        """The main process encodes; the others wait, then read the same files."""
        folder = self.out / "cache"
        source = self.cfg.model.speaker_encoder
        args = (name, items, skipped, self.codec_dir, folder, self.speaker_encoder, source)
        if self.workers.is_main:
            build_cache(*args, progress=progress)
        self.workers.barrier()
        return build_cache(*args, progress=False)

    # -- export --------------------------------------------------------------------------------
    def export(self, folder: Path | None = None) -> Path:
        """Write the current model as a Qwen3-TTS folder (default ``OUT/model``).

        A model with a speaker encoder also gets the centre of its training utterances'
        speaker vectors at strength 1 (no change to any voice; see
        :mod:`omnispeech.talker.contrast`): the strength is chosen after training, by ear and
        by ``omnispeech eval tts --contrast``."""
        out = self.model.export(
            folder or self.out / "model",
            self.frontend,
            self.codec_dir,
            self.speaker_encoder,
            self.cfg.model,
            self.frames_per_token,
            self.cfg.sampling,
            self.cfg.data.guidance_dropout,
        )
        vectors = self.train_cache.speakers
        if self.speaker_encoder is not None and vectors is not None and len(vectors):
            SpeakerContrast.from_vectors(vectors).save(out)
        return out

    # -- one step ------------------------------------------------------------------------------
    def _batch(self) -> tuple[Any, dict[str, float]]:
        batch = self.batcher.batch(self.cfg.run.seed, self.step, self.workers.rank)
        return batch.to(self.workers.device), {"frames": batch.frames}

    def validate(self) -> dict[str, float]:
        """Mean held-out losses (talker, predictor) and codebook-0 accuracy, weighted by
        frames; every held-out utterance once, in fixed arrangements (seeded by its index)."""
        if self.valid_batcher is None:
            return {}
        vb = self.valid_batcher
        size = self.cfg.data.max_batch
        sums: Counter[str] = Counter()
        frames = 0
        self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(vb), size):
                chosen = vb.usable[start : start + size]
                batch = vb.make(chosen, np.random.default_rng([self.cfg.run.seed, start]))
                losses = self.model(batch.to(self.workers.device))
                for name in LOSS_NAMES:
                    sums[name] += float(losses[name]) * batch.frames
                frames += batch.frames
        self.model.train()
        return {f"valid_{name}": sums[name] / frames for name in LOSS_NAMES}

    # -- the loop ------------------------------------------------------------------------------
    loss_names = LOSS_NAMES
    run_name = "train tts"

    def _postfix(self, losses: dict[str, float]) -> dict[str, str]:
        return {
            "talker": f"{losses['talker']:.3f}",
            "mtp": f"{losses['predictor']:.3f}",
        }


def speech_rate(cache: CodeCache, text: TextTrack) -> float:
    """Mean codec frames per text token over the utterances that have text: the pace at
    which a single-stream export feeds text (see ``TTSModelConfig.single_policy``).

    Returns 3.5 (a BPE token's usual length) when no utterance has text.
    """
    pairs = [(u.frames, len(ids)) for u, ids in zip(cache.utterances, text.ids, strict=True) if ids]
    tokens = sum(n for _, n in pairs)
    return sum(f for f, _ in pairs) / tokens if tokens else 3.5
