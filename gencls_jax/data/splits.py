"""Seeded, stratified index selection: the validation hold-out and the N-per-class subset.

Pure functions of (labels, size, seed): the same inputs always pick the same rows, and the
validation rows do not depend on `per_class_limit` (the limit is applied to what is left).
"""

from __future__ import annotations

import logging

import numpy as np

from gencls_jax.errors import DataError

log = logging.getLogger(__name__)


def _class_rows(labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """For each class 0..max, its row indices in a seeded random order."""
    k = int(labels.max()) + 1 if labels.size else 0
    return [rng.permutation(np.flatnonzero(labels == c)) for c in range(k)]


def val_counts(class_sizes: np.ndarray, val_size: float) -> np.ndarray:
    """Rows per class to hold out: a fraction (< 1) of each class, or a total count split in
    proportion to class sizes (largest remainders get the leftover rows)."""
    n = int(class_sizes.sum())
    if val_size < 0:
        raise DataError(f"data.val_size must be >= 0, got {val_size}")
    total = round(val_size * n) if val_size < 1 else int(val_size)
    if val_size >= 1 and val_size != int(val_size):
        raise DataError(f"data.val_size must be a fraction < 1 or a whole count, got {val_size}")
    if total > n - len(class_sizes):
        raise DataError(
            f"data.val_size={val_size} holds out {total} of {n} rows: "
            "no training rows would be left"
        )
    exact = class_sizes * (total / max(n, 1))
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return np.minimum(counts, class_sizes - 1)  # every class keeps a training row


def stratified_split(
    labels: np.ndarray, val_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows), both sorted; each class loses the same share of its rows to val."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 1])
    rows = _class_rows(labels, rng)
    counts = val_counts(np.array([len(r) for r in rows], np.int64), val_size)
    val = np.concatenate([r[:c] for r, c in zip(rows, counts)] + [np.zeros(0, np.int64)])
    train = np.concatenate([r[c:] for r, c in zip(rows, counts)] + [np.zeros(0, np.int64)])
    return np.sort(train), np.sort(val)


# Independent seeded draws per purpose (the validation hold-out is stream 1): the same seed
# must not pick correlated rows for the training subset, the test sample and the report samples.
SAMPLE_STREAMS = {"train_limit": 2, "test": 3, "report": 4, "train_report": 5}


def per_class_sample(labels: np.ndarray, n: int, seed: int, purpose: str) -> np.ndarray:
    """Sorted rows of a seeded sample of `n` rows per class (all rows of a smaller class, logged):
    the per-class training limit, the test sample, the original protocol's 1,000-review sample
    and the train-sample re-scoring all draw with this one function, each on its own stream."""
    if n <= 0:
        raise DataError(f"rows per class must be > 0, got {n} ({purpose})")
    rng = np.random.default_rng([seed, SAMPLE_STREAMS[purpose]])
    picked = []
    for c, r in enumerate(_class_rows(np.asarray(labels), rng)):
        if 0 < len(r) < n:
            log.info("class %d has %d rows, fewer than %d (%s): using all", c, len(r), n, purpose)
        picked.append(r[:n])
    return np.sort(np.concatenate(picked + [np.zeros(0, np.int64)]))
