"""Speech for TTS training: the text tokenizer and a one-time cache of codec codes.

The talker learns codec codes, not audio, so every utterance of a manifest is encoded once with
the codec (:meth:`Codec.encode_file`) and the codes are kept in the run folder::

    OUT/cache/train.safetensors   codes [K, total frames] (int16), offsets [U + 1] (int64),
                                  speakers [U, hidden] (float32; only with a speaker encoder)
    OUT/cache/train.json          per utterance: path, text, language, frames, speaker; the
                                  skipped counts; the fingerprint of what made the cache

Utterance ``u`` owns frames ``offsets[u]:offsets[u + 1]`` (12.5 frames per second with the
released codec). The cache is rebuilt when the manifest, the codec or the speaker encoder
changes (the fingerprint differs), and reused otherwise, e.g. when a run resumes. The speaker
ids are not part of the fingerprint (they change no code): every load takes them from the
manifest by audio path, so a cache written before speakers were recorded stays usable and gains
them (one written before paths were recorded has none, and its utterances never get an
in-context reference).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers

from omnispeech.errors import ConfigError, OmnispeechError
from omnispeech.pipelines.codec import Codec
from omnispeech.pipelines.languages import language_name
from omnispeech.pipelines.tokenizer import qwen_byte_level
from omnispeech.talker import SpeakerEncoder
from omnispeech.training.asr_data import Transcribed

# The special tokens a Qwen3-TTS tokenizer carries: the chat markers of the prompt and the
# text-track control items tts_pad, tts_bos and tts_eos (names as in the released vocabulary).
TTS_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|tts_pad|>",
    "<|tts_text_bos|>",
    "<|tts_text_eod|>",
)


def train_text_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE with Qwen's pre-tokenisation trained on ``texts``, then
    :data:`TTS_SPECIALS`; at most ``vocab_size`` entries. Any text encodes (bytes are in the
    base alphabet)."""
    tok = qwen_byte_level(models.BPE(unk_token=None))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TTS_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in TTS_SPECIALS])
    return tok


def tokenizer_texts(utterances: Sequence[Transcribed]) -> list[str]:
    """What the tokenizer learns from: each transcript once, and the prompt's role word."""
    return list(dict.fromkeys(u.text for u in utterances)) + ["assistant\n"] * 20


def language_key(code: str) -> str:
    """The name a language tag is stored under in the talker's config (``english`` for
    ``en``), the form ``TTS.synthesize(language=...)`` accepts."""
    return language_name(code).strip().lower()


@dataclasses.dataclass(frozen=True)
class CachedUtterance:
    """One cached utterance: transcript, ISO 639 language, its frames in the cache, and who
    speaks it."""

    text: str
    language: str
    start: int  # first frame in the cache's codes
    frames: int  # number of codec frames (80 ms each with the released codec, 40 ms at 25 Hz)
    path: str = ""  # the audio file (empty in caches written before it was recorded)
    # The manifest's speaker id; empty when unknown (such an utterance is never paired with
    # another one as an in-context reference).
    speaker: str = ""


@dataclasses.dataclass
class CodeCache:
    """Codes of a set of utterances, in memory.

    Attributes:
        utterances: the usable utterances, in manifest order.
        codes: ``[K, total]`` int64 codes of all utterances, end to end.
        speakers: ``[U, hidden]`` x-vectors (one per utterance) or None.
        skipped: utterances left out, by reason (``unreadable``, ``too_short``,
            ``no_speaker_vector``, and those of the manifest reader: ``missing``, ``no_text``,
            ``too_long``).
    """

    utterances: list[CachedUtterance]
    codes: torch.Tensor
    speakers: torch.Tensor | None
    skipped: Counter[str]

    def codes_of(self, index: int) -> torch.Tensor:
        """``[K, frames]`` codes of utterance ``index``."""
        u = self.utterances[index]
        return self.codes[:, u.start : u.start + u.frames]


def _fingerprint(items: Sequence[Transcribed], codec_dir: Path, speaker: str) -> str:
    digest = hashlib.sha256()
    digest.update((codec_dir / "config.json").read_bytes())
    digest.update(str((codec_dir / "model.safetensors").stat().st_size).encode())
    digest.update(speaker.encode())
    for u in items:
        digest.update(f"{u.path}\t{u.text}\t{u.language}\n".encode())
    return digest.hexdigest()


def build_cache(  # noqa: PLR0913 - where the cache goes and what fills it
    name: str,
    items: Sequence[Transcribed],
    skipped: Counter[str],
    codec_dir: Path,
    folder: Path,
    speaker: SpeakerEncoder | None = None,
    speaker_source: str = "",
    progress: bool = True,
) -> CodeCache:
    """Encode ``items`` with the codec (once) and return the cache; reuse a matching one.

    Args:
        name: the cache's file stem (``train``, ``valid``).
        items: utterances from :func:`~omnispeech.training.asr_data.read_transcribed`.
        skipped: that reader's counts; files the codec cannot decode are added under
            ``unreadable``, files too short for one frame under ``too_short``, clips the
            speaker encoder refuses (silent, under 1 s) under ``no_speaker_vector``.
        codec_dir: the codec folder.
        folder: where the cache files go (``OUT/cache``).
        speaker: a speaker encoder for the x-vectors, or None.
        speaker_source: where the speaker encoder came from (part of the fingerprint).
        progress: a progress bar while encoding.

    Raises:
        ConfigError: no utterance could be encoded.
    """
    data_file, index_file = folder / f"{name}.safetensors", folder / f"{name}.json"
    fingerprint = _fingerprint(items, codec_dir, speaker_source)
    if index_file.is_file() and data_file.is_file():
        index = json.loads(index_file.read_text())
        if index.get("fingerprint") == fingerprint:
            return _load(data_file, index, items)
    codec = Codec.from_pretrained(codec_dir)
    kept: list[dict] = []
    codes: list[torch.Tensor] = []
    vectors: list[torch.Tensor] = []
    skipped = Counter(skipped)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=f"encoding {name} set", unit="utt")
    start = 0
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # silence/clipping notices of single files
        for utt in items:
            if bar is not None:
                bar.update(1)
            try:
                c = codec.encode_file(utt.path)
            except OmnispeechError:
                # Undecodable audio (a corrupt file behind a valid header), NaN samples.
                skipped["unreadable"] += 1
                continue
            try:
                vector = speaker.embed_audio(utt.path).float().cpu() if speaker else None
            except OmnispeechError:
                # The speaker encoder refuses silent clips and clips under a second.
                skipped["no_speaker_vector"] += 1
                continue
            if c.shape[1] == 0:
                skipped["too_short"] += 1
                continue
            kept.append({"text": utt.text, "language": utt.language, "start": start})
            kept[-1].update(frames=int(c.shape[1]), path=str(utt.path), speaker=utt.speaker)
            start += int(c.shape[1])
            codes.append(c.to(torch.int16))
            if vector is not None:
                vectors.append(vector)
    if bar is not None:
        bar.close()
    if not kept:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))
        raise ConfigError(f"no utterance of the {name} set could be encoded ({reasons})")
    tensors = {"codes": torch.cat(codes, dim=1).contiguous()}
    if vectors:
        tensors["speakers"] = torch.stack(vectors).contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(data_file))
    index = {"fingerprint": fingerprint, "utterances": kept, "skipped": dict(skipped)}
    index_file.write_text(json.dumps(index) + "\n")
    return _load(data_file, index, items)


def _load(data_file: Path, index: dict, items: Sequence[Transcribed]) -> CodeCache:
    tensors = load_file(str(data_file))
    # Speakers come from the manifest (see the module docstring), matched by audio path.
    speakers = {str(u.path): u.speaker for u in items}
    utterances = []
    for u in index["utterances"]:
        entry = {**u, "speaker": speakers.get(u.get("path", ""), u.get("speaker", ""))}
        utterances.append(CachedUtterance(**entry))
    return CodeCache(
        utterances=utterances,
        codes=tensors["codes"].long(),
        speakers=tensors.get("speakers"),
        skipped=Counter(index["skipped"]),
    )
