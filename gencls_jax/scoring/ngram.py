"""An n-gram class-conditional LM: the second generative expert eval may add to a run's scores.

Multinomial naive Bayes is itself a class-conditional language model (a bag of n-grams): on
short texts of a kind the GPT-2 init has not read (news topics, questions), its n-gram counts
know things the LM does not, and a product of the two experts, score_c(x) = [the run's score]
+ w * log p_ngram(x | c), can beat both. The weight w is chosen on the validation texts
(`choose_weight`, a grid that holds 0, ties to the smaller w), never fixed: the same product
helped one held-back set and hurt another at a fixed weight (issue 24). The figure that chooses
it (`eval.ngram_select`): validation accuracy, or the cross-entropy of the decision at its own
fitted temperature (`cross_entropies`). The run's checkpoint and an ensemble's members were
chosen by accuracy on the same validation texts, so the errors left there are few and hard and
the expert's help shows in the margins before it flips a decision: accuracy chose w = 0 on
TREC, SST-2 and IMDB, where the cross-entropy chose w > 0 and test rose (BUILD_NOTES, "The
n-gram expert's weight"). The temperature is refitted for each w, so a w that only rescales the
scores gains nothing.

The features: each text's lowercased words (the pattern `WORD`, each word read as the crc32 of
its UTF-8) and their n-grams up to `order`, hashed into `buckets` buckets (`hashed`). Words, not
GPT-2 token ids: alone, at order 2 and alpha 0.3, they classify SST-2's validation texts at
79.1% (token ids 77.8%) and TREC's at 83.9% (80.2%). log p_ngram(x | c) = sum over the text's
n-grams f of log theta_cf, theta_cf = (N_cf + alpha) / (N_c + alpha * V): the counts N of the
training texts, V the buckets any training text reached; an n-gram in no training text is left
out, as a vocabulary fitted on the training texts (scikit-learn's MultinomialNB) leaves it out.
Pure NumPy on the host, float64.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from gencls_jax.errors import DataError
from gencls_jax.scoring import calibration, decide
from gencls_jax.system import fileio

WORD = re.compile(r"\w+")  # a word; punctuation is left out
COUNTS_FILE = "ngram_counts.npz"  # beside metrics.json: what predict needs of the expert
_PRIME = np.uint64(1099511628211)  # FNV-1a's 64-bit prime: one n-gram -> one 64-bit hash
_SEED = np.uint64(14695981039346656037)  # FNV-1a's offset basis
SELECT = ("accuracy", "cross_entropy")  # eval.ngram_select: the validation figure that picks w


def check_settings(weights, order, alpha, buckets, select="accuracy") -> None:
    """The expert's config keys, checked before anything is read: a bad value is a one-line
    DataError."""
    w = tuple(weights) if isinstance(weights, (tuple, list)) else None
    if not w or any(
        isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x) for x in w
    ):
        raise DataError(f"eval.ngram_weights must be a tuple of numbers, got {weights!r}")
    if min(w) < 0:
        raise DataError(f"eval.ngram_weights must be >= 0 (0 = no expert), got {weights!r}")
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 5:
        raise DataError(f"eval.ngram_order must be an integer in 1..5, got {order!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise DataError(f"eval.ngram_alpha must be a number > 0 (the smoothing), got {alpha!r}")
    if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= 2**24:
        raise DataError(f"eval.ngram_buckets must be an integer in 1..2**24, got {buckets!r}")
    if select not in SELECT:
        raise DataError(f"eval.ngram_select must be one of {SELECT}, got {select!r}")


def enabled(weights) -> bool:
    """Whether a grid asks for the expert at all ((0,) is today's classifier, no fit)."""
    return any(float(w) > 0 for w in weights)


def sequences(texts: Sequence[str]) -> list[np.ndarray]:
    """Per text, the ids its n-grams are made of: the crc32 of each of its lowercased words."""
    return [
        np.array([zlib.crc32(w.encode()) for w in WORD.findall(t.lower())], np.uint64)
        for t in texts
    ]


def hashed(seqs: Sequence[np.ndarray], order: int, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """([M] text index, [M] bucket) of every n-gram (n = 1..order) of every text: an n-gram's
    bucket is its FNV-1a hash (over n and its ids) modulo `buckets`."""
    lengths = np.array([len(s) for s in seqs], np.int64)
    flat = np.concatenate([np.asarray(s, np.uint64) for s in seqs] + [np.zeros(0, np.uint64)])
    text = np.repeat(np.arange(len(seqs)), lengths)
    rows, feats = [], []
    for n in range(1, order + 1):
        m = len(flat) - n + 1
        if m <= 0:
            break
        h = np.full(m, _SEED ^ np.uint64(n), np.uint64)
        for j in range(n):
            h = (h ^ flat[j : j + m]) * _PRIME
        inside = text[:m] == text[n - 1 : n - 1 + m]  # the n-gram does not cross two texts
        rows.append(text[:m][inside])
        feats.append((h[inside] % np.uint64(buckets)).astype(np.int64))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(feats)


def fit(seqs: Sequence[np.ndarray], labels, k: int, order: int, buckets: int) -> np.ndarray:
    """[K, buckets] int64: how often each hashed n-gram occurs in each class's training texts
    (a text without a label, < 0, is not counted)."""
    rows, feats = hashed(seqs, order, buckets)
    cls = np.asarray(labels, np.int64)[rows]
    keep = cls >= 0
    flat = cls[keep] * buckets + feats[keep]
    return np.bincount(flat, minlength=k * buckets).reshape(k, buckets)


def log_probs(counts: np.ndarray, seqs: Sequence[np.ndarray], alpha: float, order: int):
    """[N, K] float64 log p_ngram(x | c) of each text under the counts (`fit`): the sum of the
    smoothed log theta_cf over its n-grams that some training text has."""
    counts = np.asarray(counts, np.float64)
    k, buckets = counts.shape
    seen = counts.sum(0) > 0
    vocab = max(int(seen.sum()), 1)
    log_theta = np.log(counts + alpha) - np.log(counts.sum(1, keepdims=True) + alpha * vocab)
    rows, feats = hashed(seqs, order, buckets)
    keep = seen[feats]
    rows, feats = rows[keep], feats[keep]
    out = np.zeros((len(seqs), k))
    for c in range(k):
        out[:, c] = np.bincount(rows, weights=log_theta[c, feats], minlength=len(seqs))
    return out


def save(path: Path, counts: np.ndarray) -> None:
    """The counts as a small .npz: the nonzero cells only (flat index, count)."""
    flat = counts.reshape(-1)
    nz = np.flatnonzero(flat)
    with fileio.atomic_open(path, "wb") as f:
        np.savez_compressed(f, shape=np.array(counts.shape), index=nz, count=flat[nz])


def load(path: Path) -> np.ndarray:
    """The [K, buckets] counts `save` wrote."""
    with np.load(path) as z:
        flat = np.zeros(int(np.prod(z["shape"])), np.int64)
        flat[z["index"]] = z["count"]
        return flat.reshape(tuple(int(s) for s in z["shape"]))


def decision_scores(ll, nb, n_tokens, labels, rule: str, prior, grid) -> dict:
    """{w: [N, K] scores of `rule` on ll + w * nb} for each w of `grid`: [N, K] log-likelihoods
    `ll` and n-gram log-probabilities `nb` of labelled texts (the calibrated rule: its offsets
    fitted on each combination, as eval fits them on the validation texts)."""
    out = {}
    for w in grid:
        combined = ll + w * nb
        off = decide.fit_offsets(combined, labels) if rule == "calibrated" else None
        out[w] = decide.scores(combined, n_tokens, rule, prior, off)
    return out


def accuracies(scores: dict, labels) -> dict:
    """{w: accuracy} of `decision_scores`' {w: [N, K] scores}."""
    return {w: float(np.mean(s.argmax(1) == np.asarray(labels))) for w, s in scores.items()}


def cross_entropy(scores: np.ndarray, labels) -> tuple[float, float]:
    """(mean -log softmax(scores / T)[label], T) of [N, K] scores, T the temperature that
    minimises it (`calibration.fit_temperature`)."""
    t, _ = calibration.fit_temperature(scores, labels)
    return calibration.nll(scores, labels, t), t


def cross_entropies(scores: dict, labels) -> dict:
    """{w: `cross_entropy`} of `decision_scores`' {w: [N, K] scores}."""
    return {w: cross_entropy(s, labels) for w, s in scores.items()}


def choose_weight(figures: dict, lower_is_better: bool = False) -> float:
    """The weight of the best validation figure ({w: figure}: accuracy, or with
    `lower_is_better` a cross-entropy); a tie goes to the smallest w, so a grid holding 0 never
    does worse on that figure than no expert."""
    sign = 1.0 if lower_is_better else -1.0
    return min(figures, key=lambda w: (sign * figures[w], w))


def select_weight(select: str, accuracies: dict, cross_entropies: dict) -> float:
    """The weight `eval.ngram_select` chooses from validation's {w: accuracy} and
    {w: cross-entropy}."""
    if select == "cross_entropy":
        return choose_weight(cross_entropies, lower_is_better=True)
    return choose_weight(accuracies)


def term(counts: np.ndarray, texts: Sequence[str], weight: float, alpha: float, order: int):
    """[N, K] what the expert adds to a run's per-class scores: weight * log p_ngram(x | c)."""
    return weight * log_probs(counts, sequences(texts), alpha, order)
