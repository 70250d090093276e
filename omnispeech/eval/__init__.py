"""Quality measures of omnispeech's models.

* :mod:`omnispeech.eval.codec`: how closely a codec reconstructs held-out audio
  (multi-scale log-mel distance, per file and on average).
"""

from omnispeech.eval.codec import CodecScore, evaluate_codec

__all__ = ["CodecScore", "evaluate_codec"]
