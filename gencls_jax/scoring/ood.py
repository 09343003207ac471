"""Is a text like the training texts at all? What only a generative classifier can answer.

A generative classifier models p(text | c), so it also models the text itself:
p(text) = sum_c p(c) p(text | c). A text unlike any class's training texts gets a low p(text)
whatever label it would be given, while a discriminative model's top posterior (MSP, the usual
baseline) can be high on anything. The score is per token, `-log p(text) / n_tokens` (nats per
scored token, EOS included): the total log p(text) falls with length alone, and length must not
decide what is foreign.

In distribution: `ood_score <= threshold`, the threshold chosen on validation texts so that a
share `eval.ood_keep` of them is kept (`keep_threshold`). NumPy on the host, float64.
"""

from __future__ import annotations

import math

import numpy as np

from gencls_jax.errors import DataError

# the quantiles of the OOD score that eval reports per split (metrics.json, report.md)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def log_marginal(ll: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    """[N] log p(text) = logsumexp_c [log p(c) + log p(text | c)] in nats, from [N, K]
    log-likelihoods and the [K] log prior (the training class frequencies: the p(c) of the
    generative model, whatever rule decides)."""
    s = np.asarray(ll, np.float64) + np.asarray(log_prior, np.float64)[None, :]
    top = s.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(s - top).sum(axis=1, keepdims=True)))[:, 0]


def ood_scores(ll: np.ndarray, log_prior: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
    """[N] -log p(text) / n_tokens: nats per scored token; higher = less like the training
    texts."""
    return -log_marginal(ll, log_prior) / np.maximum(np.asarray(n_tokens, np.float64), 1.0)


def check_keep(keep: float) -> float:
    """`eval.ood_keep` as a float in (0, 1], else a one-line DataError."""
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise DataError(
            f"eval.ood_keep must be in (0, 1] (the share of validation texts kept in "
            f"distribution), got {keep!r}"
        )
    return float(keep)


def keep_threshold(val_scores: np.ndarray, keep: float) -> float:
    """The smallest validation OOD score t with at least ceil(keep * n) validation scores <= t:
    `ood_score <= t` keeps a share `keep` of the validation texts (more where scores tie)."""
    scores = np.sort(np.asarray(val_scores, np.float64))
    if scores.size == 0:
        raise DataError("an OOD threshold needs validation texts, and none were scored")
    k = math.ceil(check_keep(keep) * scores.size - 1e-9)  # 0.95 * 20 is 19, not 19.000000004
    return float(scores[max(k, 1) - 1])


def distribution(scores: np.ndarray, threshold: float | None = None) -> dict:
    """The OOD scores of one split: n, mean, std, min, max, QUANTILES, and the share kept at
    `threshold` (when there is one)."""
    s = np.asarray(scores, np.float64)
    if s.size == 0:
        return {"n": 0}
    out = dict(n=int(s.size), mean=float(s.mean()), std=float(s.std()), min=float(s.min()))
    out.update({f"p{round(100 * q):02d}": float(np.quantile(s, q)) for q in QUANTILES})
    out["max"] = float(s.max())
    if threshold is not None:
        out["kept"] = float(np.mean(s <= threshold))
    return out


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """P(a foreign text scores higher than an in-distribution one), ties counted half: the
    Mann-Whitney U statistic over both sizes (0.5 = the score cannot tell them apart; nan when
    either side is empty)."""
    a, b = np.asarray(in_scores, np.float64), np.asarray(out_scores, np.float64)
    if a.size == 0 or b.size == 0:
        return float("nan")
    both = np.concatenate([a, b])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    # average 1-based rank of each distinct value: ties share the mean of their ranks
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    u = ranks[a.size :].sum() - b.size * (b.size + 1) / 2.0
    return float(u / (a.size * b.size))
