"""How the class conditions the language model: one strategy object per mode.

Everything that differs between the modes lives here, behind one interface (`Conditioning`):
which texts a run trains on, how its parameters are initialised and stacked (the restore
template too), its training stream, how a text is scored against every class, its generation
prompt, its pure (params, tokens, mask) scorer and its Hugging Face export.

- `per_class`: one LM per class, the K models stacked on a leading class axis and trained in one
  vmapped step on [K, B, T] batches (each class model on its own texts).
- `label_prefix`: one LM; every text is preceded by its class's label prefix (weight 0), and a
  text is scored once per class with that class's prefix.
- `unconditional`: one LM of all texts, labels ignored (in-domain pretraining); no classes.
- `discriminative`: the baseline beside the generative classifier, on equal terms: the same
  GPT-2 body with a linear classification head on pooled features (`model.pool`), trained on
  the decision only; it has no log p(x|c), no prompt, nothing to generate.

A new mode is one subclass here and an entry in `MODES`. The training *objective* (what the
loss is) is a separate axis: `objectives.py`; a mode says how its classes are arranged for the
decision objective (`decision_slices`, `decision_sums`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencls_jax import model as gpt2
from gencls_jax import objectives, score, token_scoring
from gencls_jax.batch_scoring import one_model, score_rows, stacked_models
from gencls_jax.data import pipeline
from gencls_jax.data.batching import PerClassStream, SlicedStream, TrainStream
from gencls_jax.data.rows import Rows, scored_tokens
from gencls_jax.data.sources import DataError, Dataset, check_every_class_present, concat
from gencls_jax.data.tokenize import Tokenizer
from gencls_jax.weights import save_pretrained


class Conditioning:
    """The interface; the defaults are those of a single shared model."""

    name = ""
    stacked = False  # K models on a leading class axis, batches [K, B, T]; else one model, [B, T]
    classifies = True  # has classes to score texts against
    generative = True  # scores are log p(x|c) (decided with the class prior); else posteriors

    def datasets(self, config, tokenizer: Tokenizer, splits: Sequence[str]) -> dict[str, Dataset]:
        """The tokenized splits a run of this mode uses."""
        return pipeline.load_datasets(config, splits=splits, tokenizer=tokenizer)

    def init_params(self, params: Any, num_classes: int) -> Any:
        """The trainable parameters, from one model's initial parameters."""
        return params

    def params_template(self, model_config: gpt2.GPT2Config, num_classes: int) -> Any:
        """Shapes and dtypes of a trained run's parameters (what a checkpoint restores into)."""
        return jax.eval_shape(lambda: self.init_params(gpt2.init_params(model_config), num_classes))

    def train_stream(
        self, config, train: Dataset, tokenizer: Tokenizer, batch_size: int | None = None
    ):
        """Training batches (also the validation-loss batches, with the eval batch size)."""
        return TrainStream(
            self._rows(config, train, tokenizer),
            pipeline.batch_spec(config, batch_size),
            config.seed,
        )

    def steps_per_model(self, stream) -> Callable[[int], int | tuple[int, ...]]:
        """epoch -> optimizer updates of each model in it (the schedules run over these)."""
        return stream.num_batches

    def score(
        self, params, ds: Dataset, tokenizer: Tokenizer, config, model_config, desc: str = "scoring"
    ) -> tuple[np.ndarray, np.ndarray]:
        """([N, K] log p(text | class), [N] scored tokens per text) of a tokenized Dataset."""
        raise NotImplementedError(f"a {self.name} model has no classes to score texts against")

    def token_log_probs(
        self, params, ds: Dataset, tokenizer: Tokenizer, config, model_config
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per text of `ds`, ([n_i, K] float64 log p(token | its context, class) of its scored
        tokens in order, [n_i] those token ids), scored with the rows `score` uses: each text's
        values sum to its `score` log-likelihoods (up to float32 rounding). Explanations."""
        raise NotImplementedError(f"a {self.name} model has no per-token likelihoods")

    def _token_values(self, params, rows: Rows, n: int, config, model_config, score_fn):
        per_row = token_scoring.score_row_tokens(
            params,
            rows,
            model_config,
            score_fn=score_fn,
            batch_size=config.eval.batch_size,
            bucket_lengths=tuple(config.data.bucket_lengths),
            max_len=config.data.max_len,
        )
        return token_scoring.text_token_values(rows, per_row, n)

    def decision_slices(self, config, ds: Dataset, tokenizer: Tokenizer) -> tuple[Rows, ...]:
        """Slice k: every text of `ds` as class k's model reads it (the decision objective)."""
        raise NotImplementedError(f"a {self.name} model has no classes to train a decision on")

    def decision_stream(
        self, config, ds: Dataset, tokenizer: Tokenizer, batch_size: int | None = None
    ):
        """Mixed-class batches of sliced texts with their labels (`train.objective='decision'`)."""
        return SlicedStream(
            self.decision_slices(config, ds, tokenizer),
            ds.labels,
            pipeline.batch_spec(config, batch_size),
            config.seed,
        )

    def decision_sums(self, config, log_prior: np.ndarray):
        """The conditioning's scores for the decision objective: (params, batch, model_config,
        rng) -> `objectives.DecisionSums`; generative: log p(x|c) + log p(c) of every class."""
        return functools.partial(
            objectives.class_decision_sums,
            stacked=self.stacked,
            log_prior=jnp.asarray(log_prior, jnp.float32),
        )

    def reserved_ids(self, config, tokenizer: Tokenizer, label_names: Sequence[str]) -> list[int]:
        """Token ids the mode cannot do without (`data.compact_vocab` keeps them whatever their
        counts)."""
        return []

    def generation(self, k: int, prefix: Sequence[int]) -> dict:
        """Arguments of `generate.generate_for_class` that sample class k (`prefix`: its label
        prefix)."""
        raise NotImplementedError(f"a {self.name} model has no classes to sample")

    def scorer(
        self,
        model_config: gpt2.GPT2Config,
        eos_id: int | None,
        prefixes: Sequence[Sequence[int]],
        max_len: int,
    ):
        """The pure (params, tokens [B, T], mask [B, T]) -> [B, K] scorer of texts that fit the
        run's rows (`max_len`: data.max_len; `score.score_texts`)."""
        raise NotImplementedError(f"a {self.name} model has no classes to score texts against")

    def export(
        self, folder: Path, model_config: gpt2.GPT2Config, params: Any, label_names: Sequence[str]
    ) -> None:
        """The trained model(s) as Hugging Face folder(s)."""
        save_pretrained(model_config, params, folder)

    @staticmethod
    def _rows(config, ds: Dataset, tokenizer: Tokenizer, labels: np.ndarray | None = None) -> Rows:
        return pipeline.rows(config, ds, tokenizer, labels)

    @staticmethod
    def _score_kw(config) -> dict:
        return dict(
            batch_size=config.eval.batch_size,
            bucket_lengths=tuple(config.data.bucket_lengths),
            max_len=config.data.max_len,
            prefetch=config.data.prefetch,
            progress=bool(config.progress_bars),
        )


class PerClass(Conditioning):
    name = "per_class"
    stacked = True

    def init_params(self, params, num_classes):
        return score.stack_params([params] * num_classes)

    def train_stream(self, config, train, tokenizer, batch_size=None):
        check_every_class_present(train, "training set")
        spec = pipeline.batch_spec(config, batch_size)
        return PerClassStream(
            tuple(
                TrainStream(
                    self._rows(config, train.subset(np.flatnonzero(train.labels == k)), tokenizer),
                    spec,
                    config.seed,
                    k,
                )
                for k in range(train.num_classes)
            )
        )

    def steps_per_model(self, stream):
        return stream.steps_per_model  # each class model its own number of updates and schedule

    def score(self, params, ds, tokenizer, config, model_config, desc="scoring"):
        rows = self._rows(config, ds, tokenizer)
        ll = score_rows(
            params,
            rows,
            len(ds),
            model_config,
            score_fn=stacked_models,
            desc=desc,
            **self._score_kw(config),
        )
        return ll, scored_tokens(rows, len(ds))

    def token_log_probs(self, params, ds, tokenizer, config, model_config):
        rows = self._rows(config, ds, tokenizer)
        return self._token_values(
            params, rows, len(ds), config, model_config, token_scoring.stacked_token_log_probs
        )

    def decision_slices(self, config, ds, tokenizer):
        return (self._rows(config, ds, tokenizer),) * ds.num_classes  # every model reads the text

    def generation(self, k, prefix):
        return dict(class_index=k, prefix_tokens=())

    def scorer(self, model_config, eos_id, prefixes, max_len):
        return functools.partial(
            score.score_texts, config=model_config, eos_id=eos_id, prefixes=None, max_len=max_len
        )

    def export(self, folder, model_config, params, label_names):
        for k, name in enumerate(label_names):
            save_pretrained(
                model_config, jax.tree_util.tree_map(lambda x: x[k], params), Path(folder) / name
            )


class LabelPrefix(Conditioning):
    name = "label_prefix"

    def train_stream(self, config, train, tokenizer, batch_size=None):
        return TrainStream(
            self._rows(config, train, tokenizer, train.labels),
            pipeline.batch_spec(config, batch_size),
            config.seed,
        )

    def decision_slices(self, config, ds, tokenizer):
        return tuple(
            self._rows(config, ds, tokenizer, np.full(len(ds), k)) for k in range(ds.num_classes)
        )

    def score(self, params, ds, tokenizer, config, model_config, desc="scoring"):
        """K passes of the one model, each with one class's prefix; every class scores the same
        text tokens (the rows give every class one text budget)."""
        cols, counts = [], []
        for c, name in enumerate(ds.label_names):
            rows = self._rows(config, ds, tokenizer, np.full(len(ds), c))
            cols.append(
                score_rows(
                    params,
                    rows,
                    len(ds),
                    model_config,
                    score_fn=one_model,
                    desc=f"{desc} [{name}]",
                    **self._score_kw(config),
                )
            )
            counts.append(scored_tokens(rows, len(ds)))
        if any(not np.array_equal(n, counts[0]) for n in counts):
            raise RuntimeError(
                "label prefixes: the classes scored different numbers of text tokens"
            )
        return np.concatenate(cols, axis=1), counts[0]

    def token_log_probs(self, params, ds, tokenizer, config, model_config):
        """K passes, each with one class's prefix (weight 0, dropped): every class scores the
        same text tokens, in windows too (each window starts with the class's prefix)."""
        cols, targets = [], None
        for c in range(ds.num_classes):
            rows = self._rows(config, ds, tokenizer, np.full(len(ds), c))
            values, t = self._token_values(
                params, rows, len(ds), config, model_config, token_scoring.one_model_token_log_probs
            )
            if targets is not None and any(not np.array_equal(a, b) for a, b in zip(t, targets)):
                raise RuntimeError("label prefixes: the classes scored different text tokens")
            cols.append(values)
            targets = t
        return [np.concatenate(v, axis=1) for v in zip(*cols)], targets

    def reserved_ids(self, config, tokenizer, label_names):
        """The label prefixes' ids: were they 'other', every class would read the same prefix."""
        d = config.data
        return [
            int(t)
            for p in pipeline.label_prefixes(tokenizer, d.label_prefix_template, label_names)
            for t in p
        ]

    def generation(self, k, prefix):
        return dict(class_index=None, prefix_tokens=prefix)

    def scorer(self, model_config, eos_id, prefixes, max_len):
        prefixes = tuple(tuple(int(t) for t in p) for p in prefixes)
        return functools.partial(
            score.score_texts,
            config=model_config,
            eos_id=eos_id,
            prefixes=prefixes,
            max_len=max_len,
        )


class Unconditional(Conditioning):
    """One LM of the texts alone, labels ignored: in-domain pretraining on
    `data.pretrain_splits`."""

    name = "unconditional"
    classifies = False

    def datasets(self, config, tokenizer, splits):
        wanted = tuple(s for s in config.data.pretrain_splits if s != "train")
        ds = pipeline.load_datasets(
            config, splits=("train", "val", *wanted), tokenizer=tokenizer, min_classes=1
        )
        train = ds["train"]
        for s in wanted:
            train = concat(train, ds[s])
        return {"train": train, "val": ds["val"]}


@functools.partial(jax.jit, static_argnames=("config", "pool"))
def _head_log_posteriors(params, inputs, targets, weights, config, pool):
    """[rows, K] log-softmax of the classification head (one row per text)."""
    batch = {"inputs": inputs, "targets": targets, "weights": weights}
    return jax.nn.log_softmax(objectives.head_logits(params, batch, config, None, pool), axis=-1)


class Discriminative(Conditioning):
    """GPT-2 + a linear head on pooled features: params {'body': GPT-2, 'head': {kernel [D, K],
    bias [K]}}, the head zero-initialised (training starts from uniform posteriors). Trained
    with `train.objective='decision'` (its lm_weight is ignored), scored by its posteriors."""

    name = "discriminative"
    generative = False

    def init_params(self, params, num_classes):
        d = params["wte"]["embedding"].shape[1]
        head = {
            "kernel": jnp.zeros((d, num_classes), jnp.float32),
            "bias": jnp.zeros((num_classes,), jnp.float32),
        }
        return {"body": params, "head": head}

    def train_stream(self, config, train, tokenizer, batch_size=None):
        raise DataError(
            "the discriminative mode trains on the decision: set train.objective='decision'"
        )

    def decision_slices(self, config, ds, tokenizer):
        return (self._rows(config, ds, tokenizer),)

    def decision_sums(self, config, log_prior):
        return functools.partial(objectives.head_decision_sums, pool=config.model.pool)

    def score(self, params, ds, tokenizer, config, model_config, desc="scoring"):
        """[N, K] log posteriors (the head's log-softmax), one row per text (truncated)."""
        rows = self._rows(config, ds, tokenizer)
        if len(rows.inputs) != len(ds):
            raise DataError(
                "the discriminative mode reads one row per text: set data.long_text to "
                "'truncate' or 'error'"
            )
        fn = functools.partial(_head_log_posteriors, pool=config.model.pool)
        out = score_rows(
            params, rows, len(ds), model_config, score_fn=fn, desc=desc, **self._score_kw(config)
        )
        return out, scored_tokens(rows, len(ds))

    def export(self, folder, model_config, params, label_names):
        """The GPT-2 body as a Hugging Face folder, the head beside it (head.npz)."""
        save_pretrained(model_config, params["body"], folder)
        np.savez(
            Path(folder) / "head.npz",
            **{k: np.asarray(v) for k, v in params["head"].items()},
            label_names=np.asarray(label_names),
        )


MODES: dict[str, Conditioning] = {
    c.name: c for c in (PerClass(), LabelPrefix(), Unconditional(), Discriminative())
}


def get(name: str) -> Conditioning:
    if name not in MODES:
        raise DataError(f"model.conditioning must be one of {tuple(MODES)}, got {name!r}")
    return MODES[name]
