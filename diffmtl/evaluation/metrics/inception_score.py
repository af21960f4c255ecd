"""Inception Score: exp(E_x KL(p(y|x) || p(y))), averaged over splits (Salimans et al. 2016)."""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, logsumexp


def inception_score(logits: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """logits [n, classes] -> (mean, std) of the score over min(num_splits, n) equal splits."""
    log_p = log_softmax(np.asarray(logits, np.float64), axis=-1)  # [n, c]
    scores = []
    for part in np.array_split(log_p, min(num_splits, len(log_p))):
        log_marginal = logsumexp(part, axis=0) - np.log(len(part))  # [c]
        kl = np.sum(np.exp(part) * (part - log_marginal), axis=-1)  # [n_split]
        scores.append(np.exp(np.mean(kl)))
    return float(np.mean(scores)), float(np.std(scores))
