"""`GenerativeClassifier`: a trained run as a Python object, for use from other code.

clf = GenerativeClassifier.load("runs/full_6e")
clf.predict(["A wonderful film.", "Two hours I will never get back."])   # -> ['pos', 'neg']
clf.predict("A wonderful film.")                                          # -> 'pos'
ll = clf.log_likelihoods(texts)                                           # [N, K] numpy
# Inside your own JAX program: the pure scorer, the parameters, the texts' own tokens.
f = jax.jit(clf.scorer)            # f(params, tokens, mask) -> [B, K]
tokens, mask = clf.encode(texts)
f(clf.params, tokens, mask)
# Why it decided: per-token log p(token | prefix, c) - log p(token | prefix, c'), which add up
# (with the prior term) to the decision margin.
e = clf.explain("A wonderful film.")       # e.tokens, e.terms, e.prior_term, e.margin
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from gencls_jax import conditioning
from gencls_jax import model as gpt2
from gencls_jax import workdir as wd
from gencls_jax.data.pipeline import label_prefixes, tokenize_dataset
from gencls_jax.data.sources import Dataset
from gencls_jax.evaluate import log_prior
from gencls_jax.evaluate import scores as decision_scores

if TYPE_CHECKING:
    from gencls_jax.explain import Explanation


class GenerativeClassifier:
    def __init__(
        self,
        config,
        info: dict,
        model_config: gpt2.GPT2Config,
        params,
        tokenizer,
        offsets: np.ndarray | None = None,
    ):
        self.config = config
        self.label_names: list[str] = list(info["label_names"])
        self.conditioning: str = info["conditioning"]
        self.mode = conditioning.get(self.conditioning)
        self.model_config = model_config
        self.params = params  # per_class: stacked on a leading class axis
        self.tokenizer = tokenizer
        # Bayes' rule's prior for log p(x|c); a discriminative head's scores are posteriors already
        counts = info["train_class_counts"]
        self.log_prior = log_prior(counts) if self.mode.generative else np.zeros(len(counts))
        # the 'calibrated' rule's per-class offsets (fitted on validation by eval), if known
        self.offsets = None if offsets is None else np.asarray(offsets, np.float64)

    @classmethod
    def load(cls, workdir: str | Path, which: str = "best", config=None) -> "GenerativeClassifier":
        """A run's best (or latest) checkpoint, with the config it was trained with (or `config`,
        e.g. `workdir.eval_config`'s: the run's own with evaluation settings changed), and the
        calibrated offsets of its metrics.json if eval wrote them."""
        config = config if config is not None else wd.saved_config(workdir)
        if config is None:
            raise wd.RunError(f"{workdir} has no config.json: not a gencls_jax run")
        run = wd.load_run(config, workdir, which)
        return cls(
            config, run.info, run.model_config, run.params, run.tokenizer, saved_offsets(workdir)
        )

    @property
    def scorer(self):
        """The pure scoring function (params, tokens, mask) -> [B, K] log p(text | class). Jit it,
        vmap it, shard it. `tokens`, `mask` are the texts' own tokens, right-padded, as `encode`
        gives them: the run's BOS, EOS and (label_prefix runs) class prefixes are added inside. It
        equals `log_likelihoods` on texts within the context (tokens + EOS <= data.max_len less the
        longest label prefix); a wider batch raises a ValueError: score longer texts, which
        `data.long_text` truncates or windows, with `log_likelihoods`."""
        d = self.config.data
        prefixes = label_prefixes(self.tokenizer, d.label_prefix_template, self.label_names)
        eos = self.tokenizer.eos_id if d.append_eos else None
        return self.mode.scorer(self.model_config, eos, prefixes, int(d.max_len))

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

    def score_dataset(self, ds: Dataset, desc: str = "scoring") -> tuple[np.ndarray, np.ndarray]:
        """([N, K] log p(text | class), [N] scored tokens, EOS included) of a tokenized Dataset:
        the scoring eval does (`data.long_text`, windows, label prefixes)."""
        if len(ds) == 0:  # no rows: the scoring loop would not see the class axis
            return np.zeros((0, len(self.label_names))), np.zeros(0)
        return self.mode.score(
            self.params, ds, self.tokenizer, self.config, self.model_config, desc=desc
        )

    def resolve_rule(self, rule: str) -> tuple[str, str | None]:
        """(the decision rule to use for `rule`, why it is another one, or None). 'calibrated'
        needs the offsets eval fits on validation; a discriminative head has no per-token
        rule. Either falls back to Bayes' rule."""
        if rule == "calibrated" and self.offsets is None:
            return "bayes", (
                "the run's metrics.json has no calibrated offsets (run --mode=eval with 'val' in "
                "eval.splits): deciding by Bayes' rule with the training class prior"
            )
        if rule == "per_token" and not self.mode.generative:
            return "bayes", "a discriminative head's posteriors have no per-token rule: bayes"
        return rule, None

    def decision_scores(self, ll: np.ndarray, n_tokens: np.ndarray, rule: str) -> np.ndarray:
        """[N, K] scores of `rule` (see `evaluate.scores`; resolve it first): the argmax is the
        decision, their softmax the posteriors (bayes: p(c | x) under the training prior)."""
        return decision_scores(ll, n_tokens, rule, self.log_prior, self.offsets)

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
        `data.long_text` says."""
        one = isinstance(texts, str)
        ll, _ = self.score_dataset(self._dataset([texts] if one else texts))
        return ll[0] if one else ll

    def predict(self, texts: str | Sequence[str]) -> str | list[str]:
        """Label names under Bayes' rule with the training class prior: one for a single string,
        a list for a list."""
        ll = self.log_likelihoods(texts)
        pred = [self.label_names[i] for i in np.atleast_2d(ll + self.log_prior).argmax(1)]
        return pred[0] if isinstance(texts, str) else pred

    def explain(self, text: str, against: str | None = None, rule: str = "bayes") -> "Explanation":
        """Why `text` got its label: per token, log p(token | prefix, predicted) -
        log p(token | prefix, other), `other` the runner-up or `against`; with the prior term
        they add up to the decision margin (`explain.Explanation`). `rule` as `predict` uses
        (bayes); the command line's explain uses the run's eval.decision."""
        from gencls_jax import explain

        return explain.explain_texts(self, [text], against=against, rule=rule)[0]


def saved_offsets(workdir: str | Path) -> np.ndarray | None:
    """The calibrated rule's offsets from a workdir's metrics.json (eval fits them on
    validation), or None."""
    path = Path(workdir) / "metrics.json"
    if not path.exists():
        return None
    offsets = json.loads(path.read_text()).get("offsets")
    return None if offsets is None else np.asarray(offsets, np.float64)


def posteriors(scores: np.ndarray) -> np.ndarray:
    """Softmax over the class axis of decision scores, in float64 (stable for scores of
    thousands of nats): Bayes' rule's p(c | x) when the scores are log p(x|c) + log p(c)."""
    s = np.asarray(scores, np.float64)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
