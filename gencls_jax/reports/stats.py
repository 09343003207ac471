"""The figures reported about decisions: accuracy, per-class precision/recall/F1, confusion
matrices, confidence intervals, McNemar's test, and the check that a run's class models differ.

NumPy on the host, for eval's metrics.json and report.md, the end-of-run summary and the
comparison of runs (`--mode=report`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from gencls_jax.data.splits import per_class_sample
from gencls_jax.scoring.decide import scores


def wilson_interval(correct: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a proportion correct/n (95% by default); (nan, nan) if n=0."""
    if n <= 0:
        return float("nan"), float("nan")
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def confusion(labels: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    m = np.zeros((k, k), np.int64)
    np.add.at(m, (labels, pred), 1)
    return m


def classification_metrics(
    labels: np.ndarray, pred: np.ndarray, label_names: Sequence[str]
) -> dict:
    """Accuracy, per-class precision/recall/F1, the confusion matrix (rows: true) and the F1 gap."""
    k = len(label_names)
    m = confusion(labels, pred, k)
    per_class = {}
    for c, name in enumerate(label_names):
        tp = m[c, c]
        precision = tp / m[:, c].sum() if m[:, c].sum() else 0.0
        recall = tp / m[c, :].sum() if m[c, :].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = dict(
            precision=float(precision), recall=float(recall), f1=float(f1), support=int(m[c].sum())
        )
    f1s = [v["f1"] for v in per_class.values()]
    return dict(
        n=int(len(labels)),
        accuracy=float(np.mean(labels == pred)) if len(labels) else float("nan"),
        per_class=per_class,
        macro_f1=float(np.mean(f1s)),
        f1_gap=float(max(f1s) - min(f1s)),
        confusion=m.tolist(),
    )


def evaluate_split(
    ll: np.ndarray,
    labels: np.ndarray,
    n_tokens: np.ndarray,
    label_names: Sequence[str],
    prior: np.ndarray,
    offsets: np.ndarray | None,
    rules: Sequence[str],
    sample_per_class: int = 0,
    seed: int = 0,
) -> dict:
    """Metrics of every requested decision rule on one split (and on the seeded sample)."""
    out = {}
    for rule in rules:
        if rule == "calibrated" and offsets is None:
            continue
        pred = scores(ll, n_tokens, rule, prior, offsets).argmax(1)
        out[rule] = classification_metrics(labels, pred, label_names)
        if sample_per_class:
            idx = per_class_sample(labels, sample_per_class, seed, "report")
            out[rule]["sample"] = classification_metrics(labels[idx], pred[idx], label_names)
    return out


def degenerate_warning(
    ll: np.ndarray,
    labels: np.ndarray,
    pred: np.ndarray,
    label_names: Sequence[str],
    *,
    margin_ratio: float,
    split: str,
) -> str | None:
    """One line saying that a split's results do not come from distinct class models, else None.

    A run with too few optimizer steps leaves the K class models (nearly) equal, and its
    accuracy is then the prior's (majority class), not a classifier's. Two signs, either fires:
    every prediction is one class while the labels hold several; or the median over texts of
    (best - runner-up log p(x|c)) / |mean_c log p(x|c)| is below `margin_ratio`
    (`eval.degenerate_margin_ratio`). `ll` [N, K] log-likelihoods, `pred` the reported decisions."""
    n, k = ll.shape
    if n == 0 or k < 2:
        return None
    signs = []
    if len(np.unique(labels)) > 1 and len(np.unique(pred)) == 1:
        signs.append(
            f"all {n} {split} predictions are {label_names[int(pred[0])]!r} while its labels hold "
            f"{len(np.unique(labels))} classes"
        )
    top2 = np.sort(ll, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    size = np.abs(ll.mean(1))
    ratio = float(np.median(margin / np.maximum(size, np.finfo(np.float64).tiny)))
    if ratio < margin_ratio:
        signs.append(
            f"median margin {np.median(margin):.3g} nats between the best and the runner-up class, "
            f"{ratio:.2g} of a text's |log-likelihood| (median {np.median(size):.4g} nats; "
            f"eval.degenerate_margin_ratio={margin_ratio:g})"
        )
    if not signs:
        return None
    return (
        f"WARNING: the class models barely differ on {split}: {'; '.join(signs)}. "
        "The accuracy is not a trained classifier's: check the number of optimizer steps "
        "and the learning rate in the training log."
    )


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's test of two classifiers on the same examples: do they differ beyond chance?

    Only the discordant pairs count (b: a right and b wrong, c: the reverse). Two-sided p from
    the exact binomial(b + c, 1/2) tail, summed in log space so that 25,000 examples are fine."""
    a, b_ = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b, c = int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    n, k = b + c, min(b, c)
    if n == 0:
        return {"a_only": b, "b_only": c, "p_value": 1.0}
    log_pmf = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
        for i in range(k + 1)
    ]
    top = max(log_pmf)
    tail = math.exp(top) * sum(math.exp(x - top) for x in log_pmf)
    return {"a_only": b, "b_only": c, "p_value": min(1.0, 2 * tail)}
