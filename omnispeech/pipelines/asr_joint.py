"""Joint CTC/attention decoding: the decoder proposes each next token, the CTC head vets it.

omnispeech's own recognisers carry a CTC head on the encoder's tokens next to the attention
decoder. The decoder alone is a language model conditioned on audio: a small or undertrained
one drifts into fluent text the audio never said, repeats a word until its budget runs out,
or stops early. CTC scores a transcript only by what each 80 ms of audio sounds like, and it
has to account for every step of the audio, so it penalises exactly those failures. Greedy
joint decoding (as in hybrid CTC/attention recognisers) takes at each step, among the
decoder's ``TOP_K`` most likely tokens and the end of the answer, the one maximising

  (1 - w) * log p_att(token | prefix) + w * (log p_ctc(prefix + token ...) - log p_ctc(prefix ...))

where ``p_ctc(h ...)`` is the CTC probability of all paths whose labels begin with ``h`` (the
prefix probability) and, for the end, the probability of exactly ``h``. ``w`` is the folder's
``ctc_decoding_weight`` (0: the decoder alone, the released checkpoints' way).

The prefix probabilities are the standard forward recursion over the encoder steps: for the
prefix ``g`` keep ``r_n[t]`` / ``r_b[t]``, the log-probability that steps ``0..t`` emit
exactly ``g`` and end in its last label / in a blank. Extending ``g`` by label ``c``::

    phi[t] = r_b[t] if c == last(g) else logaddexp(r_n[t], r_b[t])
    r_n'[t] = logaddexp(r_n'[t-1], phi[t-1]) + x[t, c]      (r_n'[0] = x[0, c] if g is empty)
    r_b'[t] = logaddexp(r_b'[t-1], r_n'[t-1]) + x[t, blank]
    psi = logaddexp over t of phi[t-1] + x[t, c]              (the prefix probability)

computed for all candidates at once, ``O(T * TOP_K)`` per token, by a Numba kernel
(:mod:`omnispeech.pipelines.asr_joint_kernel`).

Only the transcript is scored: the ``language X<asr_text>`` header a model writes when it
detects the language is chosen by the decoder alone, and CTC joins after the marker.
"""

from __future__ import annotations

import numpy as np
import torch

# w of a folder with a CTC head that declares none. Measured on 104 held-out utterances (one per
# language) of the bundled model's corpus, greedy CER with the decoder alone and with w = 0.3 /
# 0.5 / 0.7: at step 5,000 of its recipe 0.94, 0.77 / 0.74 / 0.73; at step 19,036 0.724,
# 0.590 / 0.558 / 0.569; the shipped step 32,000 0.541, 0.464 / 0.442 / 0.497.
DEFAULT_CTC_WEIGHT = 0.5
# Candidates the CTC head rescores per step: the correct token is almost always among the
# decoder's first few; more only costs time (the recursion is linear in their number).
TOP_K = 8
NEG = -1e30  # log(0) that stays finite in sums


class CTCPrefixScorer:
    """CTC prefix probabilities of a growing transcript over one audio's encoder steps.

    Args:
        log_probs: ``[T, V + 1]`` CTC log-probabilities (the blank last, at ``V``).
    """

    def __init__(self, log_probs: np.ndarray) -> None:
        self.log_probs = np.asarray(log_probs, dtype=np.float64)
        self.blank = self.log_probs.shape[1] - 1
        self._blank_lp = np.ascontiguousarray(self.log_probs[:, self.blank])
        # The empty prefix: only blanks so far.
        self.r_n = np.full(self.log_probs.shape[0], NEG)
        self.r_b = np.cumsum(self.log_probs[:, self.blank])
        self.last: int | None = None
        self.score = 0.0  # log prefix probability of the prefix so far (empty: 1)
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray, list[int]] | None = None

    @property
    def vocab_size(self) -> int:
        """Labels the head scores (the blank excluded)."""
        return self.blank

    def extensions(self, labels: list[int]) -> np.ndarray:
        """Log prefix probabilities ``[k]`` of the prefix extended by each of ``labels``
        (ids below :attr:`vocab_size`); remembered for :meth:`advance`."""
        x = np.ascontiguousarray(self.log_probs[:, labels])  # [T, k]
        T, k = x.shape
        phi = np.repeat(np.logaddexp(self.r_n, self.r_b)[:, None], k, axis=1)
        if self.last is not None:
            # A repeated label needs a blank in between: only paths ending in a blank extend.
            phi[:, np.asarray(labels) == self.last] = self.r_b[:, None]
        r_n = np.empty((T, k))
        r_b = np.empty((T, k))
        psi = np.empty(k)
        # Imported here: loading a model must not wait for Numba (see asr_joint_kernel).
        from omnispeech.pipelines.asr_joint_kernel import extend

        extend(x, self._blank_lp, phi, self.last is None, r_n, r_b, psi)
        self._pending = (psi, r_n, r_b, list(labels))
        return psi

    def end(self) -> float:
        """Log probability that the audio says exactly the prefix so far."""
        return float(np.logaddexp(self.r_n[-1], self.r_b[-1]))

    def advance(self, label: int) -> None:
        """Append ``label`` to the prefix (scored by the last :meth:`extensions` call when it
        was among its labels, else scored now)."""
        if self._pending is None or label not in self._pending[3]:
            self.extensions([label])
        assert self._pending is not None
        psi, r_n, r_b, labels = self._pending
        j = labels.index(label)
        self.r_n, self.r_b = r_n[:, j].copy(), r_b[:, j].copy()
        self.score, self.last = float(psi[j]), label
        self._pending = None


class JointDecoder:
    """Chooses each next token of one answer from the decoder's logits and the CTC head.

    Args:
        log_probs: ``[T, V + 1]`` CTC log-probabilities of the audio (blank last).
        weight: ``w`` in (0, 1], the CTC share of each choice.
        marker: the ``<asr_text>`` id after which the transcript starts.
        in_text: whether the transcript has already started (the prompt forced the language
            and ends with the marker).
    """

    def __init__(
        self, log_probs: np.ndarray, weight: float, marker: int | None, in_text: bool
    ) -> None:
        if not 0 < weight <= 1:
            raise ValueError(f"the CTC weight must lie in (0, 1], got {weight}")
        self.ctc = CTCPrefixScorer(log_probs)
        self.weight = weight
        self.marker = marker
        self.in_text = in_text

    def feed(self, token: int) -> None:
        """Take ``token`` as part of the answer (forced by the caller or chosen here)."""
        if not self.in_text:
            self.in_text = token == self.marker
        elif token < self.ctc.vocab_size:
            self.ctc.advance(token)

    def choose(self, logits: torch.Tensor, eos: set[int], allow_end: bool = True) -> int:
        """The next token given the decoder's ``logits`` ``[V]``; an id in ``eos`` ends the
        answer (never chosen when ``allow_end`` is False). The choice is also fed."""
        if not allow_end:
            logits = logits.clone()
            logits[list(eos)] = float("-inf")
        if not self.in_text:
            token = int(logits.argmax())
            self.feed(token)
            return token
        att = torch.log_softmax(logits.float(), -1).cpu()  # scored beside NumPy CTC values
        top = torch.topk(att, min(TOP_K, att.shape[0])).indices.tolist()
        labels = [t for t in top if t not in eos and t < self.ctc.vocab_size]
        best_end = max(float(att[e]) for e in eos) if allow_end else float("-inf")
        w = self.weight
        end_score = (1 - w) * best_end + w * (self.ctc.end() - self.ctc.score)
        if not labels:
            token = int(att.argmax())
            self.feed(token)  # a token the CTC head cannot score (a special): the decoder's
            return token
        gain = self.ctc.extensions(labels) - self.ctc.score
        scores = (1 - w) * att[labels].double().numpy() + w * gain
        j = int(np.argmax(scores))
        if allow_end and end_score >= scores[j]:
            return next(e for e in eos if float(att[e]) == best_end)
        self.ctc.advance(labels[j])
        return labels[j]


__all__ = ["DEFAULT_CTC_WEIGHT", "TOP_K", "CTCPrefixScorer", "JointDecoder"]
