"""From per-class log-likelihoods to decisions: the decision rules, the prior, posteriors.

Everything here is NumPy on the host: the [N, K] log-likelihoods are small, and keeping the
decision rules out of the compiled scorer lets one scoring pass serve every rule. The figures
reported about the decisions (accuracy, F1, intervals, tests) are `reports/stats.py`.
"""

from __future__ import annotations

import numpy as np

DECISIONS = ("bayes", "per_token", "calibrated")


def log_prior(class_counts) -> np.ndarray:
    """log p(c) from the training examples per class (a class with none is an error upstream)."""
    counts = np.asarray(class_counts, np.float64)
    return np.log(counts / counts.sum())


def scores(
    ll: np.ndarray,
    n_tokens: np.ndarray,
    rule: str,
    prior: np.ndarray,
    offset: np.ndarray | None = None,
):
    """[N, K] decision scores under a rule.

    bayes      -- log p(x|c) + log p(c): the generative classifier's Bayes rule.
    per_token  -- log p(x|c) / |x|: length-normalised (the prior is negligible per token).
    calibrated -- log p(x|c) + offset_c, offsets fitted on validation (`fit_offsets`).
    """
    if rule == "bayes":
        return ll + prior[None, :]
    if rule == "per_token":
        return ll / np.maximum(n_tokens, 1)[:, None]
    if rule == "calibrated":
        if offset is None:
            raise ValueError("the 'calibrated' rule needs offsets fitted on the validation split")
        return ll + offset[None, :]
    raise ValueError(f"unknown decision rule {rule!r}; choose from {DECISIONS}")


def fit_offsets(
    ll: np.ndarray, labels: np.ndarray, iters: int = 3, max_candidates: int = 2001
) -> np.ndarray:
    """Per-class additive offsets maximising validation accuracy (coordinate search).

    Class-conditional LMs differ in how many nats they spend per text; a constant offset
    per class absorbs that bias. Offset 0 is fixed for class 0 (only differences matter).
    For each other class, every threshold where a validation decision flips is tried.
    """
    k = ll.shape[1]
    off = np.zeros(k)
    for _ in range(iters):
        for c in range(1, k):
            others = np.delete(ll + off, c, axis=1).max(1)
            # Class c wins on row i iff ll[i,c] + off_c > others[i]: candidates at the flips.
            flips = np.sort(others - ll[:, c])
            cands = np.concatenate(
                [[flips[0] - 1.0], (flips[:-1] + flips[1:]) / 2, [flips[-1] + 1.0]]
            )
            if cands.size > max_candidates:  # large validation sets: quantiles of the flips suffice
                cands = np.quantile(cands, np.linspace(0, 1, max_candidates))
            best, best_acc = off[c], -1.0
            for cand in cands:
                trial = off.copy()
                trial[c] = cand
                acc = np.mean((ll + trial).argmax(1) == labels)
                if acc > best_acc + 1e-12:
                    best, best_acc = cand, acc
            off[c] = best
    return off


def prior_for(conditioning, class_counts) -> np.ndarray:
    """The prior Bayes' rule adds to a run's scores: log p(c) of the training class counts for a
    generative run; zeros for a discriminative head, whose scores are posteriors already."""
    if conditioning.generative:
        return log_prior(class_counts)
    return np.zeros(len(class_counts))


def posteriors(scores: np.ndarray) -> np.ndarray:
    """Softmax over the class axis of decision scores, in float64 (stable for scores of
    thousands of nats): Bayes' rule's p(c | x) when the scores are log p(x|c) + log p(c)."""
    s = np.asarray(scores, np.float64)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
