"""The text track of TTS training: each cached utterance's text ids from the run's front end.

``data.text_frontend`` picks the front end (:mod:`omnispeech.pipelines.tts_frontend`):

* ``bpe``: the byte-level BPE trained on the transcripts; encoding is fast, so ids are made
  when the run starts.
* ``espeak-ipa``: espeak-ng IPA, one id per symbol of the default inventory, read in each
  utterance's own language. Phonemizing a large set takes a while, so it is done once and
  kept next to the codes::

      OUT/cache/train.phonemes.json   per utterance: ids (null: nothing to read), and with
                                      alignments each token's word; the fingerprint

  rebuilt when the texts, languages, inventory or espeak-ng library change.

For single-stream alignments each token also gets the index of its transcript word
(:func:`omnispeech.training.tts_align.bpe_token_words` / ``phoneme_token_words``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from omnispeech.errors import ConfigError, LanguageError
from omnispeech.pipelines import espeak
from omnispeech.pipelines.tts_frontend import BpeFrontend, PhonemeFrontend, TextFrontend
from omnispeech.training.asr_data import Transcribed
from omnispeech.training.tts_align import bpe_token_words, phoneme_token_words, word_spans
from omnispeech.training.tts_data import CachedUtterance


@dataclasses.dataclass
class TextTrack:
    """Text-track ids of every utterance of a cache.

    Attributes:
        ids: per utterance, its text ids (``n`` tokens), or None where there is nothing to
            read (espeak-ng has no voice for the language, or the text has no phonemes).
        words: per utterance, per token, the index of its transcript word in
            :func:`~omnispeech.training.tts_align.word_spans` (``-1``: a separator); None
            when not asked for.
        role_ids: ids of the role header that opens every prompt.
    """

    ids: list[list[int] | None]
    words: list[list[int]] | None
    role_ids: list[int]

    @property
    def unusable(self) -> int:
        """Utterances without text ids."""
        return sum(i is None for i in self.ids)


def phoneme_frontend(items: Sequence[Transcribed]) -> PhonemeFrontend:
    """A phoneme front end with the default inventory whose ``auto`` language is the most
    frequent language of ``items`` (what ``language="auto"`` reads at inference)."""
    counts = Counter(u.language for u in items)
    return PhonemeFrontend(default_language=counts.most_common(1)[0][0] if counts else "en")


def speakable(
    frontend: PhonemeFrontend, items: Sequence[Transcribed], skipped: Counter[str]
) -> list[Transcribed]:
    """The utterances of ``items`` whose language espeak-ng speaks; the others are counted in
    ``skipped["no_phonemes"]`` (before any audio is encoded for them).

    Raises:
        ConfigError: no utterance is left.
        DependencyError: espeak-ng is not installed.
    """
    voiced: dict[str, bool] = {}
    kept = []
    for u in items:
        if u.language not in voiced:
            try:
                frontend.espeak_voice(u.language)
                voiced[u.language] = True
            except LanguageError:
                voiced[u.language] = False
        if voiced[u.language]:
            kept.append(u)
        else:
            skipped["no_phonemes"] += 1
    if items and not kept:
        missing = ", ".join(sorted(k for k, ok in voiced.items() if not ok))
        raise ConfigError(
            f"data.text_frontend espeak-ipa: espeak-ng speaks none of the training languages "
            f"({missing}); use text_frontend bpe or other languages"
        )
    return kept


def encode_texts(  # noqa: PLR0913 - what to encode, how, and where its cache goes
    frontend: TextFrontend,
    utterances: Sequence[CachedUtterance],
    with_words: bool,
    folder: Path,
    name: str,
    progress: bool = True,
) -> TextTrack:
    """The text ids (and with ``with_words`` each token's word) of ``utterances``.

    Args:
        frontend: a :class:`BpeFrontend` or :class:`PhonemeFrontend`.
        utterances: the code cache's utterances, in its order.
        with_words: also map tokens to transcript words (for single-stream alignments).
        folder: the run's cache folder (phoneme caches go there).
        name: the cache's file stem (``train``, ``valid``).
        progress: a progress bar while phonemizing.
    """
    if isinstance(frontend, BpeFrontend):
        tok = frontend.tokenizer
        texts = [u.text for u in utterances]
        ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
        words = [bpe_token_words(tok, t, word_spans(t))[1] for t in texts] if with_words else None
        return TextTrack(list(ids), words, frontend.role_ids)
    assert isinstance(frontend, PhonemeFrontend)
    file = folder / f"{name}.phonemes.json"
    fingerprint = _fingerprint(frontend, utterances, with_words)
    if file.is_file():
        stored = json.loads(file.read_text(encoding="utf-8"))
        if stored.get("fingerprint") == fingerprint:
            return TextTrack(stored["ids"], stored["words"], frontend.role_ids)
    stored = {"fingerprint": fingerprint, **_phonemize(frontend, utterances, with_words, progress)}
    folder.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(stored) + "\n", encoding="utf-8")
    tmp.replace(file)
    return TextTrack(stored["ids"], stored["words"], frontend.role_ids)


def _phonemize(
    frontend: PhonemeFrontend,
    utterances: Sequence[CachedUtterance],
    with_words: bool,
    progress: bool,
) -> dict:
    """``{"ids": ..., "words": ...}`` of every utterance (see :class:`TextTrack`)."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(utterances), desc="phonemizing", unit="utt")
    ids: list[list[int] | None] = []
    words: list[list[int]] = []
    for u in utterances:
        try:
            if with_words:
                got, owners = phoneme_token_words(frontend, u.text, u.language, word_spans(u.text))
            else:
                got, owners = frontend.encode(u.text, u.language), []
        except LanguageError:
            got, owners = [], []
        # Nothing to read (a language without a voice, or only symbols espeak-ng skips).
        ids.append(got or None)
        words.append(owners)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return {"ids": ids, "words": words if with_words else None}


def _fingerprint(
    frontend: PhonemeFrontend, utterances: Sequence[CachedUtterance], with_words: bool
) -> str:
    digest = hashlib.sha256(json.dumps(frontend.to_dict(), sort_keys=True).encode())
    # Another espeak-ng build may read the same text differently.
    digest.update(f"{espeak.library().path}\t{with_words}\n".encode())
    for u in utterances:
        digest.update(f"{u.text}\t{u.language}\n".encode())
    return digest.hexdigest()
