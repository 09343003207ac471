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
from gencls_jax.scoring import batched, decide, score
from gencls_jax.scoring.explain import Explanation, explain_texts


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
        self.conditioning = conditioning.get(info["conditioning"])
        self.model_config = model_config
        self.params = params  # per_class: stacked on a leading class axis
        self.tokenizer = tokenizer
        # Bayes' rule's prior for log p(x|c); a discriminative head's scores are posteriors already
        self.log_prior = decide.prior_for(self.conditioning, info["train_class_counts"])
        # the 'calibrated' rule's per-class offsets (fitted on validation by eval), if known
        self.offsets = None if offsets is None else np.asarray(offsets, np.float64)

    @classmethod
    def load(cls, workdir: str | Path, which: str = "best", config=None) -> "GenerativeClassifier":
        """A run's best (or latest) checkpoint, with the config it was trained with (or `config`,
        e.g. `rules.eval_config`'s: the run's own with evaluation settings changed), and the
        calibrated offsets of its metrics.json if eval wrote them."""
        config = config if config is not None else rules.saved_config(workdir)
        if config is None:
            raise RunError(f"{workdir} has no config.json: not a gencls_jax run")
        run = load.load_run(config, workdir, which)
        offsets = wd.saved_offsets(workdir)
        return cls(config, run.info, run.model_config, run.params, run.tokenizer, offsets)

    @property
    def scorer(self):
        """The pure scoring function (params, tokens, mask) -> [B, K] log p(text | class). Jit it,
        vmap it, shard it. `tokens`, `mask` are the texts' own tokens, right-padded, as `encode`
        gives them: the run's BOS, EOS and (label_prefix runs) class prefixes are added inside. It
        equals `log_likelihoods` on texts within the context (tokens + EOS <= data.max_len less the
        longest label prefix); a wider batch raises a ValueError: score longer texts, which
        `data.long_text` truncates or windows, with `log_likelihoods`."""
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
        the scoring eval does (`data.long_text`, windows, label prefixes); with `per_token`,
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
        """(the decision rule to use for `rule`, why it is another one, or None). 'calibrated'
        needs the offsets eval fits on validation; a discriminative head has no per-token
        rule. Either falls back to Bayes' rule."""
        if rule == "calibrated" and self.offsets is None:
            return "bayes", (
                "the run's metrics.json has no calibrated offsets (run --mode=eval with 'val' in "
                "eval.splits): deciding by Bayes' rule with the training class prior"
            )
        if rule == "per_token" and not self.conditioning.generative:
            return "bayes", "a discriminative head's posteriors have no per-token rule: bayes"
        return rule, None

    def decision_scores(self, ll: np.ndarray, n_tokens: np.ndarray, rule: str) -> np.ndarray:
        """[N, K] scores of `rule` (see `decide.scores`; resolve it first): the argmax is the
        decision, their softmax the posteriors (bayes: p(c | x) under the training prior)."""
        return decide.scores(ll, n_tokens, rule, self.log_prior, self.offsets)

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

    def explain(self, text: str, against: str | None = None, rule: str = "bayes") -> Explanation:
        """Why `text` got its label: per token, log p(token | prefix, predicted) -
        log p(token | prefix, other), `other` the runner-up or `against`; with the prior term
        they add up to the decision margin (`scoring.explain.Explanation`). `rule` as `predict`
        uses (bayes); the command line's explain uses the run's eval.decision."""
        return explain_texts(self, [text], against=against, rule=rule)[0]
