"""`GenerativeClassifier`: a trained run as a Python object, for use from other code.

clf = GenerativeClassifier.load("runs/full_6e")
clf.predict(["A wonderful film.", "Two hours I will never get back."])   # -> ['pos', 'neg']
clf.predict("A wonderful film.")                                          # -> 'pos'
ll = clf.log_likelihoods(texts)                                           # [N, K] numpy
clf.posteriors(texts)            # [N, K] p(c | text) at the temperature eval fitted on val
clf.predict(texts, abstain_below=0.9)     # None where the top posterior is under 0.9
clf.ood_scores(texts)            # [N] -log p(text) / n_tokens: higher = less like training
clf.in_distribution(texts)       # [N] bool: ood_score <= the threshold eval set on val
j = clf.judged(texts)            # all of it from one scoring pass (decide.Judged)
# Inside your own JAX program: the pure scorer, the parameters, the texts' own tokens.
f = jax.jit(clf.scorer)            # f(params, tokens, mask) -> [B, K]
tokens, mask = clf.encode(texts)
f(clf.params, tokens, mask)
# Why it decided: per-token log p(token | prefix, c) - log p(token | prefix, c'), which add up
# (with the prior term) to the decision margin.
e = clf.explain("A wonderful film.")       # e.tokens, e.terms, e.prior_term, e.margin
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np

from gencls_jax import conditioning
from gencls_jax.data.pipeline import label_prefixes, tokenize_dataset
from gencls_jax.data.sources import Dataset
from gencls_jax.errors import RunError
from gencls_jax.model import gpt2
from gencls_jax.runs import load, rules
from gencls_jax.runs import workdir as wd
from gencls_jax.scoring import batched, calibration, decide, ngram, score
from gencls_jax.scoring.explain import Explanation, explain_texts

NO_THRESHOLD = (
    "the run has no OOD threshold (eval chooses one on the validation texts: run --mode=eval "
    "with 'val' in eval.splits)"
)


class GenerativeClassifier:
    def __init__(
        self,
        config,
        info: dict,
        model_config: gpt2.GPT2Config,
        params,
        tokenizer,
        fits: dict | None = None,
    ):
        self.config = config
        self.label_names: list[str] = list(info["label_names"])
        self.conditioning = conditioning.get(info["conditioning"])
        self.model_config = model_config
        self.params = params  # per_class: stacked on a leading class axis
        self.tokenizer = tokenizer
        # Bayes' rule's prior for log p(x|c); a discriminative head's scores are posteriors already
        self.log_prior = decide.prior_for(self.conditioning, info["train_class_counts"])
        fits = fits or {}  # what eval fitted on validation (`runs.workdir.saved_fits`)
        # the 'calibrated' rule's per-class offsets, if known
        offsets = fits.get("offsets")
        self.offsets = None if offsets is None else np.asarray(offsets, np.float64)
        # {rule: T}: posteriors softmax(scores / T); {} when eval scored no validation texts
        self.temperatures: dict[str, float] = dict(fits.get("temperatures") or {})
        # in distribution: ood_score <= this (None: no validation texts, or no p(text))
        self.ood_threshold: float | None = fits.get("ood_threshold")
        self.ood_keep: float | None = fits.get("ood_keep")  # the share of val it keeps
        # the n-gram expert eval chose on val (weight, order, alpha; None: none) and its counts
        self.ngram: dict | None = fits.get("ngram")
        self.ngram_counts: np.ndarray | None = fits.get("ngram_counts")

    @classmethod
    def load(cls, workdir: str | Path, which: str = "best", config=None) -> "GenerativeClassifier":
        """A run's best (or latest) checkpoint, with the config it was trained with (or `config`,
        e.g. `rules.eval_config`'s: the run's own with evaluation settings changed), and what
        eval fitted on validation, from its metrics.json: the calibrated rule's offsets, the
        temperatures, the OOD threshold."""
        config = config if config is not None else rules.saved_config(workdir)
        if config is None:
            raise RunError(f"{workdir} has no config.json: not a gencls_jax run")
        info = wd.read_run_info(workdir)
        if "ensemble" in info:  # made by `--mode=eval --workdirs`: its members by path
            members = [cls.load(m, which) for m in info["ensemble"]["members"]]
            return EnsembleClassifier(members, config, info, wd.saved_fits(workdir))
        run = load.load_run(config, workdir, which)
        fits = wd.saved_fits(workdir)
        return cls(config, run.info, run.model_config, run.params, run.tokenizer, fits)

    @property
    def scorer(self):
        """The pure scoring function (params, tokens, mask) -> [B, K] log p(text | class). Jit it,
        vmap it, shard it. `tokens`, `mask` are the texts' own tokens, right-padded, as `encode`
        gives them: the run's BOS, EOS and (label_prefix runs) class prefixes are added inside. It
        equals `log_likelihoods` on texts within the context (tokens + EOS <= data.max_len less the
        longest label prefix); a wider batch raises a ValueError: score longer texts, which
        `eval.long_text` (else `data.long_text`) truncates or windows, with `log_likelihoods`."""
        if not self.conditioning.generative:
            raise NotImplementedError("a discriminative head has no log p(text | class) scorer")
        d = self.config.data
        prefixes = None
        if not self.conditioning.stacked:  # one model: each class after its label prefix
            p = label_prefixes(self.tokenizer, d.label_prefix_template, self.label_names)
            prefixes = tuple(tuple(int(t) for t in q) for q in p)
        return functools.partial(
            score.score_texts,
            config=self.model_config,
            eos_id=self.tokenizer.eos_id if d.append_eos else None,
            prefixes=prefixes,
            max_len=int(d.max_len),
        )

    def _dataset(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        where: Sequence[str] | None = None,
    ) -> Dataset:
        """Texts prepared as a test split is (cleaned, tokenized); no cache file for users'
        texts. `ids` name the texts (default their index), `where` in errors (default
        texts[i])."""
        n = len(texts)
        raw = Dataset(
            list(texts),
            np.zeros(n, np.int32),
            [str(i) for i in range(n)] if ids is None else [str(i) for i in ids],
            np.full(n, "real"),
            tuple(self.label_names),
        )
        where = [f"texts[{i}]" for i in range(n)] if where is None else list(where)
        return tokenize_dataset(self.config, raw, self.tokenizer, where, cache=False)

    def score_dataset(self, ds: Dataset, desc: str = "scoring", per_token: bool = False):
        """([N, K] log p(text | class), [N] scored tokens, EOS included) of a tokenized Dataset:
        the scoring eval does (`eval.long_text`, windows, label prefixes); with `per_token`,
        per text its [n_i, K] per-token values and [n_i] token ids
        (`scoring.batched.score_dataset`)."""
        if len(ds) == 0 and not per_token:  # no rows: nothing tells the loop the class axis
            return np.zeros((0, len(self.label_names))), np.zeros(0)
        return batched.score_dataset(
            self.params,
            self.conditioning,
            ds,
            self.tokenizer,
            self.config,
            self.model_config,
            per_token=per_token,
            desc=desc,
        )

    def resolve_rule(self, rule: str) -> tuple[str, str | None]:
        """(the decision rule to use for `rule`, why it is another one, or None): 'calibrated'
        without the offsets eval fits, or per_token on a discriminative head, is Bayes' rule
        (`decide.resolve_rule`)."""
        return decide.resolve_rule(rule, self.offsets is not None, self.conditioning.generative)

    def decision_scores(
        self, ll: np.ndarray, n_tokens: np.ndarray, rule: str, expert=None
    ) -> np.ndarray:
        """[N, K] scores of `rule` (see `decide.scores`; resolve it first), the n-gram expert's
        terms (`expert_terms`) added to `ll`: the argmax is the decision, their softmax the
        posteriors (bayes: p(c | x) under the training prior)."""
        ll = ll if expert is None else ll + expert
        return decide.scores(ll, n_tokens, rule, self.log_prior, self.offsets)

    def expert_terms(self, texts: Sequence[str]) -> np.ndarray | None:
        """[N, K] weight * log p_ngram(text | c) of the n-gram expert eval chose on val
        (`scoring/ngram.py`), added to the log-likelihoods of the decision; None: no expert.
        `texts` as scored (a Dataset's, cleaned)."""
        if self.ngram is None:
            return None
        g = self.ngram
        return ngram.term(self.ngram_counts, texts, g["weight"], g["alpha"], g["order"])

    def encode(self, texts: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, mask) int32 [B, T] for `scorer`: each text's own tokens (no EOS, no prefix),
        right-padded to the longest; a single string gives B = 1."""
        tokens = self._dataset([texts] if isinstance(texts, str) else texts).tokens
        lengths = tokens.lengths
        mask = (np.arange(int(lengths.max(initial=0)))[None, :] < lengths[:, None]).astype(np.int32)
        out = np.zeros(mask.shape, np.int32)
        out[mask.astype(bool)] = tokens.flat
        return out, mask

    def log_likelihoods(self, texts: str | Sequence[str]) -> np.ndarray:
        """[N, K] log p(text | class) ([K] for a single string), long texts handled as
        `eval.long_text` (else `data.long_text`) says."""
        one = isinstance(texts, str)
        ll, _ = self.score_dataset(self._dataset([texts] if one else texts))
        return ll[0] if one else ll

    @property
    def temperature(self) -> float | None:
        """The temperature of Bayes' rule's posteriors (the rule `predict` and `posteriors` use),
        fitted by eval on the validation texts; None when it scored none. Other rules':
        `temperatures`."""
        return self.temperatures.get("bayes")

    def judge(self, ll: np.ndarray, n_tokens: np.ndarray, rule: str, expert=None) -> decide.Judged:
        """Scored texts decided as eval decides them (`decide.judge`; resolve `rule` first; the
        n-gram expert's terms: `expert_terms`): decisions, posteriors at the rule's
        temperature, log p(text), OOD scores and, given a threshold, which texts are in
        distribution."""
        return decide.judge(
            ll,
            n_tokens,
            rule,
            self.log_prior,
            offsets=self.offsets,
            temperature=self.temperatures.get(rule),
            ood_threshold=self.ood_threshold,
            generative=self.conditioning.generative,
            expert=expert,
        )

    def judged(self, texts: str | Sequence[str], rule: str = "bayes") -> decide.Judged:
        """Texts scored once and decided under `rule` (resolved: `resolve_rule`): everything
        the methods below return one part of (`decide.Judged`: decisions, posteriors at the
        temperature, log p(text), OOD scores, in distribution, scored tokens); a single string
        is a batch of one."""
        ds = self._dataset([texts] if isinstance(texts, str) else texts)
        ll, n_tok = self.score_dataset(ds)
        return self.judge(ll, n_tok, self.resolve_rule(rule)[0], self.expert_terms(ds.texts))

    def predict(
        self, texts: str | Sequence[str], abstain_below: float | None = None
    ) -> str | None | list[str | None]:
        """Label names under Bayes' rule with the training class prior: one for a single string,
        a list for a list. `abstain_below` P in (0, 1): None for a text whose top posterior
        (at the run's temperature) is under P."""
        if abstain_below is not None:
            calibration.check_abstain(abstain_below)
        j = self.judged(texts)
        keep = calibration.answered(j.posteriors, abstain_below)
        pred = [self.label_names[c] if k else None for c, k in zip(j.prediction, keep)]
        return pred[0] if isinstance(texts, str) else pred

    def posteriors(self, texts: str | Sequence[str], rule: str = "bayes") -> np.ndarray:
        """[N, K] p(class | text) under `rule`, at the temperature eval fitted for it (the
        scores' own softmax when it fitted none); [K] for a single string."""
        post = self.judged(texts, rule).posteriors
        return post[0] if isinstance(texts, str) else post

    def _ood(self, texts: str | Sequence[str], field: str):
        if not self.conditioning.generative:
            raise RunError(f"a {self.conditioning.name} run has no p(text): no OOD score")
        values = getattr(self.judged(texts), field)
        return values[0] if isinstance(texts, str) else values

    def log_marginal(self, texts: str | Sequence[str]) -> np.ndarray:
        """[N] log p(text) = logsumexp_c [log p(c) + log p(text | c)] in nats (a float for a
        single string); a discriminative run has none (RunError)."""
        return self._ood(texts, "log_marginal")

    def ood_scores(self, texts: str | Sequence[str]) -> np.ndarray:
        """[N] -log p(text) / n_tokens, nats per scored token: higher = less like the training
        texts (`scoring.ood`)."""
        return self._ood(texts, "ood_scores")

    def in_distribution(self, texts: str | Sequence[str]) -> np.ndarray:
        """[N] bool: ood_score <= the threshold eval chose on the validation texts (a share
        `ood_keep` of them is kept). A run evaluated without validation texts has no threshold
        (RunError)."""
        if self.ood_threshold is None and self.conditioning.generative:
            raise RunError(NO_THRESHOLD)
        return self._ood(texts, "in_distribution")

    def explain(self, text: str, against: str | None = None, rule: str = "bayes") -> Explanation:
        """Why `text` got its label: per token, log p(token | prefix, predicted) -
        log p(token | prefix, other), `other` the runner-up or `against`; with the prior term
        they add up to the decision margin (`scoring.explain.Explanation`). `rule` as `predict`
        uses (bayes); the command line's explain uses the run's eval.decision."""
        return explain_texts(self, [text], against=against, rule=rule)[0]


def mean_log_likelihoods(lls: Sequence[np.ndarray]) -> np.ndarray:
    """[N, K] float64 mean of the members' [N, K] log p(text | c): an ensemble's log-likelihoods.
    The mean of log-likelihoods is the log of their geometric mean, a product of experts: a
    class wins only where the members agree it explains the text, a member's near-zero
    likelihood vetoes it, and with Bayes' rule the posterior is the normalised product
    prod_m p_m(x | c)^(1/M) p(c) (the arithmetic mean of the likelihoods would be dominated by
    whichever member gives a text the highest probability, i.e. the largest model)."""
    return np.mean(np.stack([np.asarray(x, np.float64) for x in lls]), axis=0)


class EnsembleClassifier(GenerativeClassifier):
    """Runs of one task as one classifier (made by `--mode=eval --workdirs`): each member scores
    the texts with its own config, tokenizer and parameters; the log-likelihoods are their mean
    (`mean_log_likelihoods`); the decision, temperatures, OOD threshold and n-gram expert are
    those the ensemble's eval fitted (`fits`). Scored tokens are the first member's."""

    def __init__(self, members: list, config, info: dict, fits: dict):
        first = members[0]
        super().__init__(config, info, first.model_config, None, first.tokenizer, fits)
        self.members = members

    @property
    def scorer(self):
        raise NotImplementedError("an ensemble has no single scorer: use log_likelihoods")

    def score_dataset(self, ds: Dataset, desc: str = "scoring", per_token: bool = False):
        """([N, K] mean of the members' log p(text | c), [N] the first member's scored tokens);
        each member tokenizes `ds.texts` itself (its own vocabulary)."""
        if per_token:
            raise NotImplementedError("an ensemble has no per-token values (explain a member)")
        scored = [m.score_dataset(m._dataset(ds.texts, ds.ids), desc) for m in self.members]
        return mean_log_likelihoods([ll for ll, _ in scored]), scored[0][1]
