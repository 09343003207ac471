"""From per-class log-likelihoods to decisions: the decision rules, the prior, posteriors.

Everything here is NumPy on the host: the [N, K] log-likelihoods are small, and keeping the
decision rules out of the compiled scorer lets one scoring pass serve every rule. `judge` is
what eval, predict and the Python API decide per text, so their figures agree: the decision,
posteriors at the run's temperature (`calibration.py`), log p(text) and the OOD score
(`ood.py`). The figures reported about the decisions (accuracy, F1, intervals, tests) are
`reports/stats.py`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gencls_jax.scoring import calibration, ood

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


def resolve_rule(rule: str, has_offsets: bool, generative: bool) -> tuple[str, str | None]:
    """(the decision rule to use for `rule`, why it is another one, or None). 'calibrated'
    needs the offsets eval fits on validation; a discriminative head has no per-token rule.
    Either falls back to Bayes' rule."""
    if rule == "calibrated" and not has_offsets:
        return "bayes", (
            "the run's metrics.json has no calibrated offsets (run --mode=eval with 'val' in "
            "eval.splits): deciding by Bayes' rule with the training class prior"
        )
    if rule == "per_token" and not generative:
        return "bayes", "a discriminative head's posteriors have no per-token rule: bayes"
    return rule, None


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


def posteriors(scores: np.ndarray, temperature: float | None = None) -> np.ndarray:
    """Softmax over the class axis of decision scores, in float64 (stable for scores of
    thousands of nats): Bayes' rule's p(c | x) when the scores are log p(x|c) + log p(c). With a
    `temperature` T (fitted on validation, `scoring.calibration`): softmax(scores / T)."""
    s = np.asarray(scores, np.float64)
    if temperature is not None:
        s = s / temperature
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def validation_figures(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """What each epoch's validation reports of decision scores (log p(x|c) + a uniform prior):
    `val_accuracy`, and `val_decision_loss`, the mean cross-entropy of Bayes' rule, in nats: on
    a small validation set (IMDB at 500 per class holds out 50 reviews) accuracy moves in steps
    of 2 points, the cross-entropy by every text's margin (`train.best_metric` may take it)."""
    return dict(
        val_accuracy=float(np.mean(np.asarray(scores).argmax(1) == labels)),
        val_decision_loss=calibration.nll(scores, labels, 1.0),  # temperature 1: Bayes' rule's
    )


@dataclasses.dataclass(frozen=True)
class Judged:
    """Texts scored once, decided: what eval reports per text and predict writes.
    `log_marginal` and `ood_scores` are None for a discriminative head (no p(text));
    `in_distribution` also without an OOD threshold (no validation texts)."""

    rule: str
    temperature: float | None  # None: none fitted, the posteriors are the scores' own softmax
    n_tokens: np.ndarray  # [N] scored tokens per text (EOS included)
    scores: np.ndarray  # [N, K] decision scores under `rule`
    posteriors: np.ndarray  # [N, K] softmax(scores / temperature)
    log_marginal: np.ndarray | None  # [N] log p(text), nats (`scoring.ood`)
    ood_scores: np.ndarray | None  # [N] -log p(text) / n_tokens
    in_distribution: np.ndarray | None  # [N] bool, ood_score <= the threshold

    @property
    def prediction(self) -> np.ndarray:
        """[N] the decided class: the argmax of the scores (a temperature does not move it)."""
        return self.scores.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        """[N] the top posterior, after the temperature: what --abstain_below compares."""
        return self.posteriors.max(axis=1)


def judge(
    ll: np.ndarray,
    n_tokens: np.ndarray,
    rule: str,
    prior: np.ndarray,
    *,
    offsets: np.ndarray | None = None,
    temperature: float | None = None,
    ood_threshold: float | None = None,
    generative: bool = True,
    expert: np.ndarray | None = None,
) -> Judged:
    """[N, K] log-likelihoods (a discriminative run: log posteriors) and [N] scored tokens ->
    `Judged` under `rule` (resolved: 'calibrated' with its offsets), posteriors at
    `temperature`, and for a generative run log p(text) with the training `prior` (the model's
    p(c), whatever the rule) and, given a threshold, which texts are in distribution. `expert`:
    [N, K] terms added to the log-likelihoods of the decision (the n-gram expert, `ngram.term`),
    not to p(text)."""
    s = scores(ll if expert is None else ll + expert, n_tokens, rule, prior, offsets)
    marginal = ood.log_marginal(ll, prior) if generative else None
    per_token = ood.ood_scores(ll, prior, n_tokens) if generative else None
    inside = None
    if per_token is not None and ood_threshold is not None:
        inside = per_token <= ood_threshold
    post = posteriors(s, temperature)
    return Judged(rule, temperature, np.asarray(n_tokens), s, post, marginal, per_token, inside)
