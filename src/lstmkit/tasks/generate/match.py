"""A match model (the idea behind LZ77 and PAQ's match model), the char LM's partner in ``lstmkit generate``.

Text often repeats itself verbatim, and a compressor given the training text profits from every repeat; an
LSTM with a few hundred units of memory cannot. The match model finds, before each character, the most recent
earlier place (in the training text or in the text already scored) where the last ``min_len`` characters
occurred, predicts the character that followed there, and keeps following that place while its predictions
come true. ``MatchMixer`` blends that prediction into a model's distribution with a weight per match length,
learned online (an EM step per character) from the characters already scored.
"""
from __future__ import annotations

import numpy as np

# match lengths that share one mixing weight: bucket b holds lengths in [EDGES[b], EDGES[b+1])
LENGTH_EDGES = np.array([1, 6, 8, 12, 16, 24, 32, 64, 128, 256, 512])


def match_predictions(history: str, text: str, min_len: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """For each position i of ``text``, looking only at ``history`` and ``text[:i]``: the position in
    ``history + text`` of the character the match model predicts (-1: no match) and the match's length
    (0: none). Two (len(text),) int64 arrays."""
    if min_len < 1:
        raise ValueError(f"min_len: expected >= 1, got {min_len}")
    full = history + text
    last_seen: dict[str, int] = {}  # min_len-gram -> the position right after its latest occurrence
    for end in range(min_len, len(history)):
        last_seen[full[end - min_len:end]] = end
    pointer, length = 0, 0
    predicted, lengths = np.full(len(text), -1, np.int64), np.zeros(len(text), np.int64)
    for i in range(len(text)):
        p = len(history) + i  # predicting full[p] from full[:p]
        if length and full[pointer] == full[p - 1]:
            pointer, length = pointer + 1, length + 1  # the last prediction came true: keep following
        else:
            length = 0
            if p >= min_len and (end := last_seen.get(full[p - min_len:p])) is not None:
                pointer, length = end, min_len
        if length:
            predicted[i], lengths[i] = pointer, length
        if p >= min_len:
            last_seen[full[p - min_len:p]] = p
    return predicted, lengths


class MatchMixer:
    """p(x) = (1 - a_b)·p_model(x) + a_b·[x = predicted], a_b the weight of match-length bucket b.

    Each a_b is the posterior mean of the match model's share of the characters scored so far in bucket b
    (an online EM step: after each character, the match model's responsibility for it is added to the
    bucket's tally), so ``mix`` can run over a validation text first and go on learning over the test text.
    """

    def __init__(self):
        self.hits = np.ones(len(LENGTH_EDGES))  # prior: a_b = 1/2
        self.seen = np.full(len(LENGTH_EDGES), 2.0)

    def mix(self, probs: np.ndarray, targets: np.ndarray, predicted: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """probs (n, V) the model's distributions, targets (n,) the ids that came, predicted (n,) the match
        model's id (-1: none), lengths (n,) its match lengths -> (n,) the mixture's probability of each
        target, each computed before that target updates the weights."""
        n = len(targets)
        p_model = probs[np.arange(n), targets]
        out = p_model.astype(np.float64).copy()
        bucket = np.searchsorted(LENGTH_EDGES, lengths, side="right") - 1
        for i in np.flatnonzero(predicted >= 0):
            b = bucket[i]
            a = self.hits[b] / self.seen[b]
            hit = predicted[i] == targets[i]
            out[i] = (1 - a) * p_model[i] + a * hit
            self.hits[b] += a * hit / out[i]
            self.seen[b] += 1
        return out
