"""Transcribed audio for recognition training: manifests, the tokenizer, reproducible batches.

A batch depends only on (seed, step, rank): utterances are drawn by a generator seeded with
those three numbers, and so are their augmentations, so a resumed run draws exactly the
batches an uninterrupted one would and no sampler state is saved.

Each example is the Qwen3-ASR chat prompt with the audio's encoder tokens in the user turn and
the answer ``language {Name}<asr_text>{transcript}<|im_end|>`` as the target, exactly what the
pipeline reads and parses at inference; the transcript's tokens are also the CTC targets.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers

from omnispeech.audio import log_mel_spectrogram, prepare_audio
from omnispeech.errors import ConfigError
from omnispeech.pipelines.asr_prompt import ASR_TEXT, prompt_parts
from omnispeech.pipelines.languages import language_name
from omnispeech.pipelines.tokenizer import qwen_byte_level
from omnispeech.training.augment import AugmentConfig, augment, spec_augment

SAMPLE_RATE = 16_000
N_MELS = 128
IGNORE = -100
# The prompt's special tokens, in the order the released vocabularies list them.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|audio_pad|>",
    ASR_TEXT,
)


@dataclasses.dataclass(frozen=True)
class Transcribed:
    """One utterance of a manifest: audio file, transcript, ISO 639 language, seconds, and the
    speaker id (empty when the manifest names none)."""

    path: Path
    text: str
    language: str
    duration: float
    speaker: str = ""


def read_transcribed(
    manifest: str | Path,
    split: str = "",
    languages: Sequence[str] = (),
    max_seconds: float = math.inf,
) -> tuple[list[Transcribed], Counter[str]]:
    """The usable utterances of a JSONL manifest, and the skipped ones counted by reason
    (``missing`` file, ``unreadable`` audio, ``no_text``, ``too_long``).

    Args:
        manifest: one JSON object per line with ``path`` (relative to the manifest), ``text``,
            ``language`` and optionally ``split``.
        split: keep only lines of this split (empty: all).
        languages: keep only these languages (empty: all).
        max_seconds: skip longer utterances.

    An optional ``speaker`` field (e.g. ``espeak-david`` in ``omnispeech data build``'s
    manifests) is kept; TTS training pairs utterances of one speaker for in-context prompts.

    Raises:
        ConfigError: no such manifest, a line that is not a JSON object with those fields, or
            no usable utterance at all.
    """
    src = Path(manifest)
    if not src.is_file():
        raise ConfigError(f"{src}: no such manifest (a JSONL file with path, text, language)")
    keep_langs = set(languages)
    found: list[Transcribed] = []
    skipped: Counter[str] = Counter()
    for n, line in enumerate(src.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            path, text, lang = entry["path"], entry["text"], entry["language"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(
                f"{src}:{n}: expected a JSON object with 'path', 'text' and 'language'"
            ) from None
        if (split and entry.get("split") != split) or (keep_langs and lang not in keep_langs):
            continue
        if not str(text).strip():
            skipped["no_text"] += 1
            continue
        file = (src.parent / path).resolve()
        if not file.is_file():
            skipped["missing"] += 1
            continue
        try:
            info = sf.info(str(file))
            seconds = info.frames / info.samplerate
        except (sf.SoundFileError, RuntimeError, ZeroDivisionError):
            skipped["unreadable"] += 1
            continue
        if seconds <= 0:
            skipped["unreadable"] += 1
        elif seconds > max_seconds:
            skipped["too_long"] += 1
        else:
            speaker = str(entry.get("speaker") or "")
            found.append(Transcribed(file, str(text).strip(), str(lang), seconds, speaker))
    if not found:
        what = f" of split {split!r}" if split else ""
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "none listed"
        raise ConfigError(f"{src}: no usable utterances{what} (skipped: {reasons})")
    return found, skipped


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE with Qwen's pre-tokenisation trained on ``texts``, then the prompt's
    special tokens; ``vocab_size`` entries in all. Every byte is in the base alphabet, so any
    text encodes (rare scripts fall back to bytes)."""
    tok = qwen_byte_level(models.BPE(unk_token=None))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


def tokenizer_texts(utterances: Sequence[Transcribed], languages: Sequence[str]) -> list[str]:
    """What the tokenizer learns from: each distinct transcript once, and the answer prefix
    of every language (so ``language Swahili`` costs a few tokens, not a dozen)."""
    texts = list(dict.fromkeys(u.text for u in utterances))
    texts += [f"language {language_name(code)}" for code in languages] * 20
    texts += ["system", "user", "assistant"] * 20
    return texts


@dataclasses.dataclass
class ASRBatch:
    """One padded batch.

    Attributes:
        features: log-mel ``[B, 128, T]``; ``feature_lengths`` ``[B]`` valid frames.
        input_ids: prompt + answer ids ``[B, L]`` (padded with the end token).
        audio_mask: ``[B, L]``, True at the audio placeholders (the encoder's tokens go there).
        labels: ``[B, L]`` next-token targets (the id at position t+1), -100 where no loss.
        ctc_targets: transcript ids, concatenated; ``ctc_lengths`` ``[B]`` per utterance.
        seconds: audio in the batch (after speed changes).
    """

    features: torch.Tensor
    feature_lengths: torch.Tensor
    input_ids: torch.Tensor
    audio_mask: torch.Tensor
    labels: torch.Tensor
    ctc_targets: torch.Tensor
    ctc_lengths: torch.Tensor
    seconds: float

    def to(self, device: torch.device) -> ASRBatch:
        return dataclasses.replace(
            self, **{f.name: getattr(self, f.name).to(device) for f in _TENSOR_FIELDS}
        )


_TENSOR_FIELDS = [f for f in dataclasses.fields(ASRBatch) if f.name != "seconds"]


class ASRBatcher:
    """Draws augmented, tokenised batches of about ``batch_seconds`` of audio.

    Args:
        utterances: the training set.
        tokenizer: the model's tokenizer (with the special tokens).
        augment_cfg: audio and SpecAugment settings.
        batch_seconds: audio per batch (before augmentation), at most ``max_batch`` utterances.
        seed: the run's seed.
        num_tokens: encoder tokens for a number of mel frames (the encoder's rule).
    """

    def __init__(  # noqa: PLR0913 - each argument is one independent setting
        self,
        utterances: Sequence[Transcribed],
        tokenizer: Tokenizer,
        augment_cfg: AugmentConfig,
        batch_seconds: float,
        max_batch: int,
        seed: int,
        num_tokens,
    ) -> None:
        self.utterances = list(utterances)
        self.tokenizer = tokenizer
        self.augment_cfg = augment_cfg
        self.batch_seconds = batch_seconds
        self.max_batch = max_batch
        self.seed = seed
        self.num_tokens = num_tokens
        head, tail = prompt_parts("", None)
        self.head = self._ids(head)
        self.tail = self._ids(tail)
        self.audio_pad = tokenizer.token_to_id("<|audio_pad|>")
        self.end = tokenizer.token_to_id("<|im_end|>")

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def pick(self, step: int, rank: int) -> tuple[list[Transcribed], np.random.Generator]:
        """The utterances of ``rank``'s batch at ``step`` and the generator for the rest.

        Candidates are drawn at random, sorted by duration, and a random run of neighbours
        that fills ``batch_seconds`` is kept: the batch pads little (utterances of similar
        length) while every utterance stays equally likely to be drawn.
        """
        rng = np.random.default_rng([self.seed, step, rank])
        pool = rng.integers(len(self.utterances), size=4 * self.max_batch)
        ordered = sorted((self.utterances[int(i)] for i in pool), key=lambda u: u.duration)
        start = int(rng.integers(len(ordered)))
        chosen: list[Transcribed] = []
        total = 0.0
        for utt in ordered[start:] + ordered[:start][::-1]:
            if len(chosen) >= self.max_batch or (
                chosen and total + utt.duration > self.batch_seconds
            ):
                break
            chosen.append(utt)
            total += utt.duration
        return chosen, rng

    def batch(self, step: int, rank: int) -> ASRBatch:
        """The batch of process ``rank`` at ``step``."""
        chosen, rng = self.pick(step, rank)
        effects = self.augment_cfg.at_step(step)
        feats, ids, audio, labels, ctc = [], [], [], [], []
        seconds = 0.0
        for utt in chosen:
            data, rate = sf.read(str(utt.path), dtype="float32", always_2d=True)
            wav = augment(prepare_audio(data, rate, SAMPLE_RATE), rng, effects)
            wav = np.pad(wav, (0, max(0, SAMPLE_RATE // 2 - wav.shape[0])))
            seconds += wav.shape[0] / SAMPLE_RATE
            mel = log_mel_spectrogram(torch.from_numpy(wav), N_MELS).numpy()
            feats.append(spec_augment(mel, mel.shape[1], rng, effects))
            text_ids = self._ids(utt.text)
            answer = self._ids(f"language {language_name(utt.language)}{ASR_TEXT}") + text_ids
            n_audio = self.num_tokens(mel.shape[1])
            seq = self.head + [self.audio_pad] * n_audio + self.tail + answer + [self.end]
            first_answer = len(seq) - len(answer) - 1
            ids.append(seq)
            audio.append([False] * len(self.head) + [True] * n_audio)
            # Position t predicts token t + 1: targets start at the answer's first token.
            labels.append([IGNORE] * (first_answer - 1) + seq[first_answer:] + [IGNORE])
            ctc.append(text_ids)
        B = len(chosen)
        T = max(f.shape[1] for f in feats)
        L = max(len(s) for s in ids)
        features = torch.zeros(B, N_MELS, T)
        input_ids = torch.full((B, L), self.end, dtype=torch.long)
        audio_mask = torch.zeros(B, L, dtype=torch.bool)
        label_t = torch.full((B, L), IGNORE, dtype=torch.long)
        for b in range(B):
            features[b, :, : feats[b].shape[1]] = torch.from_numpy(feats[b])
            input_ids[b, : len(ids[b])] = torch.tensor(ids[b])
            audio_mask[b, : len(audio[b])] = torch.tensor(audio[b])
            label_t[b, : len(labels[b])] = torch.tensor(labels[b])
        return ASRBatch(
            features=features,
            feature_lengths=torch.tensor([f.shape[1] for f in feats]),
            input_ids=input_ids,
            audio_mask=audio_mask,
            labels=label_t,
            ctc_targets=torch.tensor([t for seq in ctc for t in seq], dtype=torch.long),
            ctc_lengths=torch.tensor([len(seq) for seq in ctc]),
            seconds=seconds,
        )


def spread_evenly(items: list[Transcribed], count: int) -> list[Transcribed]:
    """``count`` items spread evenly over the list sorted by (language, path): a held-out
    sample that visits every language in turn."""
    ordered = sorted(items, key=lambda u: (u.language, str(u.path)))
    if len(ordered) <= count:
        return ordered
    return [ordered[i * len(ordered) // count] for i in range(count)]
