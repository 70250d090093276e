"""The bridge: where an LLM meets the speech modules (the components never import each other).

- :class:`Ears`: AuT audio tokens spliced into any Hugging Face causal LM, prefilled while the
  audio streams in.
- :class:`OmniVoice`: Thinker states into the Qwen3-Omni talker, streamed through Code2Wav.
- :func:`reply_tokens` / :func:`reply_text` / :func:`speak_reply`: any LLM's reply, piece by
  piece, into :meth:`TTS.stream`.
- :class:`Omni`: Qwen3-Omni end to end (the Thinker by transformers, the speech side here).
"""

from omnispeech.bridge.ears import Ears, Listening, Prefill, prefill_text
from omnispeech.bridge.llm_voice import reply_text, reply_tokens, speak_reply
from omnispeech.bridge.omni import Omni, SpeechChunk, SpeechUnavailableWarning, TextToken
from omnispeech.bridge.omni_voice import OmniVoice, Speaking, ThinkerStates
from omnispeech.bridge.thinker import ChatIds, load_thinker

__all__ = [
    "ChatIds",
    "Ears",
    "Listening",
    "Omni",
    "OmniVoice",
    "Prefill",
    "Speaking",
    "SpeechChunk",
    "SpeechUnavailableWarning",
    "TextToken",
    "ThinkerStates",
    "load_thinker",
    "prefill_text",
    "reply_text",
    "reply_tokens",
    "speak_reply",
]
