"""How far a run's posteriors can be trusted, and one temperature that makes them trustworthier.

Which scores: the run's decision scores under its rule (`decide.scores`: bayes = log p(x|c) +
log p(c), per_token, calibrated; a discriminative run's log posteriors, whose softmax over T is
that of its logits over T). Their softmax is the posterior a run reports; a generative
classifier's is far too sure (log-likelihoods of long texts differ by tens of nats), so one
temperature T > 0 is fitted on the validation texts, posteriors softmax(scores / T). T leaves
every decision as it is (the argmax) and changes only how sure the run says it is.

The fit minimises the validation negative log-likelihood NLL(T) = mean_i -log softmax(s_i /
T)[y_i]. As a function of beta = 1/T it is convex (a log-sum-exp of linear functions minus a
linear one), hence unimodal in log T: a golden-section search over log T in TEMPERATURE_RANGE
finds its minimum to GOLDEN_TOL. A validation set that every score separates with a margin has
its minimum at T -> 0 (and one the scores get all wrong, at T -> inf): the fit then stops at
the range's end, and `fit_temperature` says so.

The figures: the top-label expected calibration error (ECE; `eval.ece_bins` equal-width bins of
the top posterior: sum over bins of |bin| / N * |accuracy(bin) - mean top posterior(bin)|), the
per-bin figures of a reliability diagram, and accuracy against coverage when a run abstains
under a top posterior P (`--abstain_below=P`). NumPy on the host, float64.
"""

from __future__ import annotations

import math

import numpy as np

from gencls_jax.errors import DataError

TEMPERATURE_RANGE = (1e-2, 1e4)  # the search's bounds (a fit at either end is reported)
GOLDEN_TOL = 1e-6  # the search stops when its bracket in log T is this narrow
# the thresholds P of the report's abstention table (--abstain_below=P); below 1/K it answers all
ABSTAIN_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def nll(scores: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean -log softmax(scores / T)[label] over the texts, in nats."""
    s = np.asarray(scores, np.float64) / temperature
    top = s.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(s - top).sum(axis=1))
    return float(np.mean(log_z - s[np.arange(len(s)), np.asarray(labels)]))


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> tuple[float, bool]:
    """(T minimising the validation NLL of softmax(scores / T), whether T is at an end of
    TEMPERATURE_RANGE): a golden-section search over log T (see the module's docstring)."""
    if len(scores) == 0:
        raise DataError("a temperature is fitted on validation texts, and none were scored")
    lo, hi = (math.log(t) for t in TEMPERATURE_RANGE)
    inv_phi = (math.sqrt(5) - 1) / 2

    def f(log_t: float) -> float:
        return nll(scores, labels, math.exp(log_t))

    a, b = hi - inv_phi * (hi - lo), lo + inv_phi * (hi - lo)
    fa, fb = f(a), f(b)
    while hi - lo > GOLDEN_TOL:
        if fa <= fb:  # the minimum is in [lo, b]
            hi, b, fb = b, a, fa
            a = hi - inv_phi * (hi - lo)
            fa = f(a)
        else:  # in [a, hi]
            lo, a, fa = a, b, fb
            b = lo + inv_phi * (hi - lo)
            fb = f(b)
    log_t = (lo + hi) / 2
    ends = [math.log(t) for t in TEMPERATURE_RANGE]
    at_end = min(abs(log_t - e) for e in ends) < 10 * GOLDEN_TOL
    return math.exp(log_t), at_end


def check_bins(bins) -> int:
    """`eval.ece_bins` as an int >= 1, else a one-line DataError."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise DataError(f"eval.ece_bins must be an integer >= 1, got {bins!r}")
    return bins


def top_label(post: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([N] top posterior, [N] whether its class is the label) of [N, K] posteriors."""
    post = np.asarray(post, np.float64)
    return post.max(axis=1), post.argmax(axis=1) == np.asarray(labels)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int) -> dict:
    """Per bin of the top posterior ((i/bins, (i+1)/bins], bin 0 from 0 inclusive): its text
    count, accuracy and mean top posterior (nan in an empty bin), and the bins' edges."""
    conf = np.asarray(confidence, np.float64)
    idx = np.clip(np.ceil(conf * check_bins(bins)).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(idx, weights=np.asarray(correct, np.float64), minlength=bins) / count
        mean_conf = np.bincount(idx, weights=conf, minlength=bins) / count
    return dict(
        edges=np.linspace(0.0, 1.0, bins + 1), count=count, accuracy=acc, confidence=mean_conf
    )


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """Top-label expected calibration error: sum over the `bins` equal-width bins of the top
    posterior of |bin| / N * |accuracy(bin) - mean top posterior(bin)| (nan for no texts)."""
    r = reliability(confidence, correct, bins)
    n = r["count"].sum()
    if n == 0:
        return float("nan")
    full = r["count"] > 0
    gap = np.abs(r["accuracy"][full] - r["confidence"][full])
    return float(np.sum(r["count"][full] / n * gap))


def check_abstain(p) -> float:
    """`--abstain_below` as a float in (0, 1), else a one-line DataError."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < 1:
        raise DataError(
            f"--abstain_below={p}: must be in (0, 1), the top posterior under which the "
            "answer is null"
        )
    return float(p)


def answered(post: np.ndarray, abstain_below: float | None) -> np.ndarray:
    """[N] bool: the texts whose top posterior is at least `abstain_below` (all when None)."""
    top = np.asarray(post, np.float64).max(axis=1)
    if abstain_below is None:
        return np.ones(top.shape, bool)
    return top >= check_abstain(abstain_below)


def coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, accuracy), [N] each: answering only the i + 1 texts of highest top posterior
    (ties in a stable order), the share of texts answered and the accuracy on them."""
    order = np.argsort(-np.asarray(confidence, np.float64), kind="stable")
    hits = np.cumsum(np.asarray(correct, np.float64)[order])
    n = np.arange(1, len(order) + 1)
    return n / max(len(order), 1), hits / n


def abstain_table(confidence: np.ndarray, correct: np.ndarray, thresholds) -> list[dict]:
    """Per threshold P: texts answered (top posterior >= P), their share and their accuracy
    (None when none is answered): what `--abstain_below=P` does on these texts."""
    conf, ok = np.asarray(confidence, np.float64), np.asarray(correct, bool)
    rows = []
    for p in thresholds:
        keep = conf >= p
        n = int(keep.sum())
        rows.append(
            dict(
                abstain_below=float(p),
                answered=n,
                coverage=n / max(len(conf), 1),
                accuracy=float(ok[keep].mean()) if n else None,
            )
        )
    return rows
