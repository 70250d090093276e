"""The bridge: where an LLM meets the speech modules (the components never import each other).

- :class:`Ears`: AuT audio tokens spliced into any Hugging Face causal LM, prefilled while the
  audio streams in.
"""

from omnispeech.bridge.ears import Ears, Listening, Prefill

__all__ = ["Ears", "Listening", "Prefill"]
