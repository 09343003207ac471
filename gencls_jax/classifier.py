"""`GenerativeClassifier`: a trained run as a Python object, for use from other code.

clf = GenerativeClassifier.load("runs/full_6e")
clf.predict(["A wonderful film.", "Two hours I will never get back."])   # -> ['pos', 'neg']
clf.predict("A wonderful film.")                                          # -> 'pos'
ll = clf.log_likelihoods(texts)                                           # [N, K] numpy
# Inside your own JAX program: the pure scorer, the parameters, the texts' own tokens.
f = jax.jit(clf.scorer)            # f(params, tokens, mask) -> [B, K]
tokens, mask = clf.encode(texts)
f(clf.params, tokens, mask)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from gencls_jax import conditioning
from gencls_jax import model as gpt2
from gencls_jax import workdir as wd
from gencls_jax.data.pipeline import label_prefixes, tokenize_dataset
from gencls_jax.data.sources import Dataset
from gencls_jax.data.tokenize import load_tokenizer
from gencls_jax.evaluate import log_prior


class GenerativeClassifier:
    def __init__(self, config, info: dict, model_config: gpt2.GPT2Config, params, tokenizer):
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

    @classmethod
    def load(cls, workdir: str | Path, which: str = "best") -> "GenerativeClassifier":
        """A run's best (or latest) checkpoint, with the config it was trained with."""
        config = wd.saved_config(workdir)
        if config is None:
            raise wd.RunError(f"{workdir} has no config.json: not a gencls_jax run")
        info, model_config, params, _ = wd.load_run(config, workdir, which)
        tok = load_tokenizer(config.data.tokenizer, config.data.tokenizer_fallback)
        return cls(config, info, model_config, params, tok)

    @property
    def scorer(self):
        """The pure scoring function (params, tokens, mask) -> [B, K] log p(text | class). Jit it,
        vmap it, shard it. `tokens`, `mask` are the texts' own tokens, right-padded, as `encode`
        gives them: the run's EOS and (label_prefix runs) class prefixes are added inside. It equals
        `log_likelihoods` on texts within the context (tokens + EOS <= data.max_len less the longest
        label prefix); score longer texts, which `data.long_text` truncates or windows, with
        `log_likelihoods`."""
        d = self.config.data
        prefixes = label_prefixes(self.tokenizer, d.label_prefix_template, self.label_names)
        return self.mode.scorer(
            self.model_config, self.tokenizer.eos_id if d.append_eos else None, prefixes
        )

    def _dataset(self, texts: Sequence[str]) -> Dataset:
        """Texts prepared as a test split is (cleaned, tokenized); no cache file for users'
        texts."""
        n = len(texts)
        raw = Dataset(
            list(texts),
            np.zeros(n, np.int32),
            [str(i) for i in range(n)],
            np.full(n, "real"),
            tuple(self.label_names),
        )
        return tokenize_dataset(
            self.config, raw, self.tokenizer, [f"texts[{i}]" for i in range(n)], cache=False
        )

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
        ll, _ = self.mode.score(
            self.params,
            self._dataset([texts] if one else texts),
            self.tokenizer,
            self.config,
            self.model_config,
        )
        return ll[0] if one else ll

    def predict(self, texts: str | Sequence[str]) -> str | list[str]:
        """Label names under Bayes' rule with the training class prior: one for a single string,
        a list for a list."""
        ll = self.log_likelihoods(texts)
        pred = [self.label_names[i] for i in np.atleast_2d(ll + self.log_prior).argmax(1)]
        return pred[0] if isinstance(texts, str) else pred
