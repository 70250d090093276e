"""The Qwen3-ASR prompt, its languages, and parsing of the model's answer (pure Python).

The model reads a chat prompt whose user turn is the audio::

    <|im_start|>system\\n{context}<|im_end|>\\n
    <|im_start|>user\\n<|audio_start|><|audio_pad|> x N<|audio_end|><|im_end|>\\n
    <|im_start|>assistant\\n

and answers ``language {Name}<asr_text>{transcript}``. Forcing a language pre-fills the
assistant turn with ``language {Name}<asr_text>`` so the model writes only the transcript.
``language None`` is the model's way of saying it heard no speech.
"""

from __future__ import annotations

import dataclasses
import re

from omnispeech.errors import InputError
from omnispeech.pipelines.languages import LANGUAGE_NAMES

# The 30 languages Qwen3-ASR was trained to name (its 22 Chinese dialects are reported as
# Chinese); the names are the exact strings the model writes after "language ".
LANGUAGES: dict[str, str] = {
    "ar": "Arabic",
    "yue": "Cantonese",
    "zh": "Chinese",
    "cs": "Czech",
    "da": "Danish",
    "nl": "Dutch",
    "en": "English",
    "fil": "Filipino",
    "fi": "Finnish",
    "fr": "French",
    "de": "German",
    "el": "Greek",
    "hi": "Hindi",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "mk": "Macedonian",
    "ms": "Malay",
    "fa": "Persian",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "es": "Spanish",
    "sv": "Swedish",
    "th": "Thai",
    "tr": "Turkish",
    "vi": "Vietnamese",
}

ASR_TEXT = "<asr_text>"


def resolve_language(language: str | None, supported: list[str] | None = None) -> str | None:
    """Map a code (``en``) or a name (``english``) to the model's name (``English``).

    Args:
        language: code or name, any case; None or ``auto`` means detect.
        supported: the checkpoint's own list of names, when its config has one.

    Raises:
        InputError: the language is not one the model knows, naming the valid choices.
    """
    if language is None or language.strip().lower() in ("", "auto"):
        return None
    key = language.strip().lower()
    names = supported if supported else list(LANGUAGES.values())
    by_lower = {n.lower(): n for n in names}
    name = (
        by_lower.get(key)
        or by_lower.get(LANGUAGES.get(key, "").lower())
        or by_lower.get(LANGUAGE_NAMES.get(key, "").lower())
    )
    if name is None:
        codes = {v: k for k, v in LANGUAGE_NAMES.items()}
        choices = ", ".join(f"{codes[n]}={n}" if n in codes else n for n in names)
        raise InputError(f"unsupported language {language!r}; choose one of: {choices}")
    return name


def prompt_parts(context: str, language: str | None) -> tuple[str, str]:
    """The prompt text before and after the audio placeholders."""
    head = f"<|im_start|>system\n{context}<|im_end|>\n<|im_start|>user\n<|audio_start|>"
    tail = "<|audio_end|><|im_end|>\n<|im_start|>assistant\n"
    if language is not None:
        tail += f"language {language}{ASR_TEXT}"
    return head, tail


def token_budget(num_samples: int, max_new_tokens: int) -> int:
    """Most tokens worth generating for ``num_samples`` of 16 kHz audio.

    No speech yields more than about 20 tokens per second, so a longer answer is a decoder
    loop; stopping there bounds the cost of a runaway generation.
    """
    return min(max_new_tokens, 32 + 20 * -(-num_samples // 16000))


@dataclasses.dataclass(frozen=True)
class Transcription:
    """What the model heard.

    Attributes:
        text: the transcript.
        language: the language the model named (or was forced to), None for no speech.
        token_ids: the generated token ids (after the prompt, without the end token).
        words: the transcript's words with their times, when asked for (models with a CTC
            head); ``omnispeech.pipelines.asr_align.TimedSpan`` items.
    """

    text: str
    language: str | None
    token_ids: tuple[int, ...] = ()
    words: tuple = ()


def parse_answer(answer: str, forced: str | None) -> tuple[str, str | None]:
    """Split ``language X<asr_text>text`` into (text, language)."""
    if forced is not None:
        return clean_repeats(answer.strip()), forced
    head, marker, text = answer.partition(ASR_TEXT)
    if not marker:
        return clean_repeats(answer.strip()), None
    language = head.strip()
    if language.lower().startswith("language "):
        language = language[len("language ") :].strip()
    if language.lower() in ("", "none"):
        return clean_repeats(text.strip()), None
    return clean_repeats(text.strip()), language


def clean_repeats(text: str, limit: int = 20) -> str:
    """Collapse a character or short pattern repeated more than ``limit`` times in a row
    (a known failure mode of ASR decoders on noise) to ``limit`` repetitions."""
    text = re.sub(rf"(.)\1{{{limit},}}", lambda m: m.group(1) * limit, text)
    return re.sub(rf"(.{{2,20}}?)\1{{{limit},}}", lambda m: m.group(1) * limit, text)
