"""Why a text got its label: per-token contributions to the decision margin.

A generative classifier decides by score(c) = log p(x|c) + b_c (Bayes: b_c = log p(c)), and
log p(x|c) is a sum over the text's scored tokens of log p(token | its context, c). So the margin
between the predicted class p and another class o splits exactly into one term per token,
log p(token | context, p) - log p(token | context, o), plus the prior term b_p - b_o:

    sum(terms) + prior_term == score(p) - score(o)

The per-token values come from the scorer itself (`scoring.batched.score_dataset` with
`per_token`: the rows eval scores, EOS, label prefixes and windows included), and the
log-likelihoods reported here are their sums, so the identity holds to float64 rounding. Under
the per_token rule (scores log p(x|c) / |x|) each term is divided by |x| and the prior term is
0; under the calibrated rule b_c is the fitted offset. A run with the n-gram expert
(`scoring/ngram.py`) adds w * log p_ngram(x | c) to the log-likelihoods: its share of the margin
is one more term, `ngram_term`, not split per token (sum(terms) + prior_term + ngram_term ==
margin), and the note says so. A discriminative head has no per-token
likelihoods, hence nothing to explain. The page is `reports/explain_page.py`; the command,
`commands/explain.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from gencls_jax.data.tokenize import token_strings
from gencls_jax.errors import DataError, RunError
from gencls_jax.scoring.decide import posteriors

EOS_SHOWN = "<|endoftext|>"  # how the appended end-of-text token is shown


@dataclasses.dataclass(frozen=True)
class Explanation:
    """One text's decision, token by token. Token i's string is `tokens[i]` (a character that
    byte-level BPE split over several tokens belongs to the last of them, the others are '');
    the last token is the appended EOS when the run appends one. Tokens past a truncated
    text's budget are not scored (`scored` False, term 0, log-probabilities NaN); only the first
    `explain.tail_tokens` of them are kept, and `cut` counts the others, left off."""

    id: str
    text: str  # the text as scored (after cleaning)
    label_names: tuple[str, ...]
    tokens: list[str]
    token_ids: list[int]
    scored: np.ndarray  # bool [n]
    token_log_probs: np.ndarray  # [n, K] log p(token | context, class)
    terms: np.ndarray  # [n] contribution of each token to the margin (predicted - compared)
    log_likelihoods: np.ndarray  # [K] sums of token_log_probs over the scored tokens
    scores: np.ndarray  # [K] decision scores under `rule`
    predicted: str
    compared: str
    rule: str
    prior_term: float  # b_predicted - b_compared (log prior, offset or 0, by rule)
    margin: float  # scores[predicted] - scores[compared]
    truncated: bool
    eos: bool = False  # the last token is the EOS the run appends (scored like the others)
    note: str = ""  # what the reader should know (a fallback rule, an --against that won)
    cut: int = 0  # unscored tokens left off after the last one kept (explain.tail_tokens)
    temperature: float | None = None  # the run's fitted temperature of `rule` (None: 1)
    ngram_term: float = 0.0  # the n-gram expert's share of the margin (not split per token)

    @property
    def token_sum(self) -> float:
        return float(self.terms.sum())

    @property
    def n_scored(self) -> int:
        return int(self.scored.sum())

    @property
    def posteriors(self) -> np.ndarray:
        """p(class | text) at the run's temperature, as predict reports them."""
        return posteriors(self.scores / (self.temperature or 1.0))

    def to_json(self) -> dict:
        """The numbers as JSON (the explain command's jsonl line)."""
        names = self.label_names
        return {
            "id": self.id,
            "text": self.text,
            "predicted": self.predicted,
            "compared": self.compared,
            "rule": self.rule,
            "log_likelihoods": {n: float(v) for n, v in zip(names, self.log_likelihoods)},
            "scores": {n: float(v) for n, v in zip(names, self.scores)},
            "posteriors": {n: float(v) for n, v in zip(names, self.posteriors)},
            "temperature": self.temperature,
            "token_sum": self.token_sum,
            "prior_term": self.prior_term,
            "ngram_term": self.ngram_term,
            "margin": self.margin,
            "n_tokens": self.n_scored,
            "truncated": self.truncated,
            "note": self.note,
            "tokens_cut": self.cut,
            "tokens": [
                {
                    "token": s,
                    "id": int(t),
                    "term": float(self.terms[i]) if self.scored[i] else None,
                    "log_probs": (
                        {n: float(v) for n, v in zip(names, self.token_log_probs[i])}
                        if self.scored[i]
                        else None
                    ),
                }
                for i, (s, t) in enumerate(zip(self.tokens, self.token_ids))
            ],
        }


def explain_texts(
    clf,
    texts: Sequence[str],
    ids: Sequence[str] | None = None,
    where: Sequence[str] | None = None,
    *,
    against: str | None = None,
    rule: str = "bayes",
) -> list[Explanation]:
    """An `Explanation` per text: the predicted class against the runner-up, or against the
    class `against` (a text predicted as `against` is compared with its runner-up, noted).
    `rule` is resolved as predict does (`clf.resolve_rule`). Of a truncated text's unscored
    tokens only the first `explain.tail_tokens` are kept: a 5 MB text read for 256 tokens
    makes a page of a few hundred tokens, not of a million."""
    names = tuple(clf.label_names)
    if not clf.conditioning.generative:
        raise RunError(
            f"a {clf.conditioning.name} run has no per-token likelihoods to explain (its head "
            "gives class posteriors only): explain a per_class or label_prefix run"
        )
    if len(names) < 2:
        raise RunError(f"a run with {len(names)} class has no decision to explain")
    if against is not None and against not in names:
        raise DataError(f"--against={against!r} is not a class of this run; classes: {names}")
    rule, why = clf.resolve_rule(rule)
    ds = clf._dataset(texts, ids, where)
    values, targets = clf.score_dataset(ds, per_token=True)
    eos = clf.tokenizer.eos_id if clf.config.data.append_eos else None
    expert = clf.expert_terms(ds.texts)
    return [
        explain_one(clf, ds, i, values[i], targets[i], eos, rule, why, against, expert)
        for i in range(len(ds))
    ]


def explain_one(
    clf, ds, i: int, v, targets, eos, rule: str, why, against, expert=None
) -> Explanation:
    """Text i of `ds` explained from its per-token values `v` [n, K] (and their token ids), and
    the n-gram expert's [N, K] terms of `ds` (None: no expert)."""
    names = tuple(clf.label_names)
    text_ids = np.asarray(ds.tokens[i], np.int64)
    full = np.concatenate([text_ids, [eos] if eos is not None else []]).astype(np.int64)
    n = len(v)
    if n > len(full) or not np.array_equal(targets, full[:n]):
        raise RuntimeError(f"text {ds.ids[i]}: the scored tokens are not the text's tokens")
    ll = v.sum(axis=0)
    e = np.zeros(len(names)) if expert is None else expert[i]
    scores = clf.decision_scores(ll[None, :], np.array([float(n)]), rule, e[None, :])[0]
    p = int(np.argmax(scores))
    notes = [why] if why else []
    if against is not None and names.index(against) != p:
        o = names.index(against)
    else:
        if against is not None:
            notes.append(f"predicted {against!r} itself: compared with the runner-up")
        o = int(np.argmax(np.where(np.arange(len(names)) == p, -np.inf, scores)))
    scale = 1.0 / max(n, 1) if rule == "per_token" else 1.0  # the rule's weight of log p(x|c)
    bias = clf.decision_scores(np.zeros((1, len(names))), np.ones(1), rule)[0]  # b_c
    if expert is not None:
        notes.append(
            f"the n-gram expert (weight {clf.ngram['weight']:g}) adds "
            f"{scale * (e[p] - e[o]):+.4f} to the margin (ngram_term), not split per token"
        )
    keep = min(len(full), n + int(clf.config.explain.tail_tokens))
    shown_eos = eos is not None and keep == len(full)
    lp = np.full((keep, len(names)), np.nan)
    lp[:n] = v
    terms = np.zeros(keep)
    terms[:n] = scale * (v[:, p] - v[:, o])
    strings = token_strings(clf.tokenizer, full[: keep - shown_eos]) + (
        [EOS_SHOWN] if shown_eos else []
    )
    return Explanation(
        id=str(ds.ids[i]),
        text=ds.texts[i],
        label_names=names,
        tokens=strings,
        token_ids=full[:keep].tolist(),
        scored=np.arange(keep) < n,
        token_log_probs=lp,
        terms=terms,
        log_likelihoods=ll,
        scores=scores,
        predicted=names[p],
        compared=names[o],
        rule=rule,
        prior_term=float(bias[p] - bias[o]),
        margin=float(scores[p] - scores[o]),
        truncated=n < len(full),
        eos=shown_eos,
        note="; ".join(notes),
        cut=len(full) - keep,
        temperature=clf.temperatures.get(rule),
        ngram_term=float(scale * (e[p] - e[o])),
    )
