"""`GenerativeClassifier`: a trained run as a Python object, for use from other code.

    clf = GenerativeClassifier.load("runs/full_6e")
    clf.predict(["A wonderful film.", "Two hours I will never get back."])   # -> ['pos', 'neg']
    ll = clf.log_likelihoods(texts)                                           # [N, K] numpy
    # Inside your own JAX program: the pure scorer and the stacked parameters.
    f = jax.jit(clf.scorer)            # f(params, tokens, mask) -> [B, K]
    f(clf.params, tokens, mask)
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Sequence

import ml_collections
import numpy as np

from gencls_jax import evaluate as E
from gencls_jax import experiment as X
from gencls_jax import model as M
from gencls_jax import score
from gencls_jax.classify import class_log_likelihoods
from gencls_jax.data.clean import clean_text
from gencls_jax.data.sources import Dataset
from gencls_jax.data.tokenize import load_tokenizer, tokenize_texts


class GenerativeClassifier:
    def __init__(self, config, info: dict, model_config: M.GPT2Config, params, tokenizer):
        self.config = config
        self.label_names: list[str] = list(info["label_names"])
        self.conditioning: str = info["conditioning"]
        self.model_config = model_config
        self.params = params  # per_class: stacked on a leading class axis
        self.tokenizer = tokenizer
        self.log_prior = E.log_prior(info["train_class_counts"])

    @classmethod
    def load(cls, workdir: str | Path, which: str = "best") -> "GenerativeClassifier":
        """A run's best (or latest) checkpoint, with the config it was trained with."""
        workdir = Path(workdir)
        cfg_path = workdir / "config.json"
        if not cfg_path.exists():
            raise X.RunError(f"{workdir} has no config.json: not a gencls_jax run")
        config = ml_collections.ConfigDict(json.loads(cfg_path.read_text()))
        info, model_config, params, _ = X.load_run(config, workdir, which)
        tok = load_tokenizer(config.data.tokenizer, config.data.tokenizer_fallback)
        return cls(config, info, model_config, params, tok)

    @property
    def scorer(self):
        """The pure scoring function (params, tokens, mask) -> [B, K] log p(text | class), for
        per-class models (texts right-padded, fitting the context). Jit it, vmap it, shard it."""
        if self.conditioning != "per_class":
            raise NotImplementedError("the (params, tokens, mask) scorer is for per_class runs; use log_likelihoods()")
        return functools.partial(score.class_log_likelihoods, config=self.model_config)

    def _dataset(self, texts: Sequence[str]) -> Dataset:
        if any(not t.strip() for t in texts):
            raise ValueError("empty text: nothing to classify")
        d = self.config.data
        texts = [clean_text(t, d.clean_html) for t in texts]  # as the training texts were cleaned
        tokens = tokenize_texts(texts, self.tokenizer, "", d.tokenize_batch_size)  # EOS: added by the rows
        n = len(texts)
        return Dataset(list(texts), np.zeros(n, np.int32), [str(i) for i in range(n)], np.array(["real"] * n),
                       tuple(self.label_names), tokens)

    def log_likelihoods(self, texts: Sequence[str]) -> np.ndarray:
        """[N, K] log p(text | class), long texts handled as `data.long_text` says."""
        ll, _ = class_log_likelihoods(self.params, self._dataset(texts), self.tokenizer, self.config, self.model_config)
        return ll

    def predict(self, texts: Sequence[str]) -> list[str]:
        """Label names under Bayes' rule with the training class prior."""
        ll = self.log_likelihoods(texts)
        return [self.label_names[i] for i in (ll + self.log_prior[None, :]).argmax(1)]
