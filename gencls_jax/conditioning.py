"""How the class conditions the language model: one strategy object per conditioning.

A strategy says which texts a run reads and how its classes are arranged; it computes nothing
on the accelerator. What the scorer (`scoring/batched.py`) and the objectives
(`training/objectives.py`) ask of it:
- `class_rows(config, ds, tok, k)`: the texts of `ds` as class k's model reads them (k None: as
  every stacked class model reads them, the same rows for all) when scored (`eval.long_text`),
  or with `scoring=False` when trained on the decision (`data.long_text`);
- `stacked`: K class models stacked on a leading parameter axis, or one shared model;
- `generative`: its scores are log p(x|c) (decided with the class prior), else posteriors.
Besides: the splits a run reads (`datasets`), its parameters (`init_params`, the restore
template), its LM training stream, the tokens a compact vocabulary must keep, its generation
prompt and its Hugging Face export.

- `per_class`: one LM per class, the K models stacked on a leading class axis and trained in one
  step on [K, B, T] batches (each class model on its own texts).
- `label_prefix`: one LM; every text is preceded by its class's label prefix (weight 0), and a
  text is scored once per class with that class's prefix.
- `unconditional`: one LM of all texts, labels ignored (in-domain pretraining); no classes.
- `discriminative`: the baseline beside the generative classifier, on equal terms: the same
  GPT-2 body with a linear classification head on pooled features (`model.pool`), trained on
  the decision only; it has no log p(x|c), no prompt, nothing to generate.

A new conditioning is one subclass here and an entry in `CONDITIONINGS`. What a step minimises
is another axis: `training/objectives.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gencls_jax.data import compact, pipeline
from gencls_jax.data.batching import PerClassStream, SlicedStream, TrainStream
from gencls_jax.data.rows import Rows
from gencls_jax.data.sources import Dataset, check_every_class_present, concat
from gencls_jax.data.tokenize import Tokenizer, load_tokenizer, one_pool
from gencls_jax.errors import DataError
from gencls_jax.model import gpt2
from gencls_jax.model.weights import save_pretrained


class Conditioning:
    """The interface; the defaults are those of a single shared model."""

    name = ""
    stacked = False  # K models on a leading class axis, batches [K, B, T]; else one model, [B, T]
    classifies = True  # has classes to score texts against
    generative = True  # scores are log p(x|c) (decided with the class prior); else posteriors

    def datasets(self, config, tokenizer: Tokenizer, splits: Sequence[str]) -> dict[str, Dataset]:
        """The tokenized splits a run of this conditioning uses."""
        return pipeline.load_datasets(config, splits=splits, tokenizer=tokenizer)

    def init_params(self, params: Any, num_classes: int) -> Any:
        """The trainable parameters, from one model's initial parameters."""
        return params

    def params_template(self, model_config: gpt2.GPT2Config, num_classes: int) -> Any:
        """Shapes and dtypes of a trained run's parameters (what a checkpoint restores into)."""
        return jax.eval_shape(lambda: self.init_params(gpt2.init_params(model_config), num_classes))

    def class_rows(
        self, config, ds: Dataset, tokenizer: Tokenizer, k: int | None, scoring: bool = True
    ) -> Rows:
        """The rows of `ds` as class k's model reads them: scored, or (`scoring=False`) trained
        on by the decision objective (`pipeline.rows`)."""
        raise DataError(f"a {self.name} model has no classes to score texts against")

    def decision_slices(self, config, ds: Dataset, tokenizer: Tokenizer) -> tuple[Rows, ...]:
        """Slice k: every text of `ds` as class k's model reads it (`train.objective='decision'`:
        every class scores every text)."""
        return tuple(
            self.class_rows(config, ds, tokenizer, k, scoring=False) for k in range(ds.num_classes)
        )

    def decision_stream(self, config, ds: Dataset, tokenizer: Tokenizer):
        """Mixed-class batches of sliced texts with their labels (`train.objective='decision'`)."""
        return SlicedStream(
            self.decision_slices(config, ds, tokenizer),
            ds.labels,
            pipeline.batch_spec(config),
            config.seed,
            int(config.data.pack_rows),
        )

    def train_stream(
        self, config, train: Dataset, tokenizer: Tokenizer, batch_size: int | None = None
    ):
        """LM training batches (also the validation-loss batches, with the eval batch size)."""
        return TrainStream(
            pipeline.rows(config, train, tokenizer),
            pipeline.batch_spec(config, batch_size),
            config.seed,
        )

    def steps_per_model(self, stream) -> Callable[[int], int | tuple[int, ...]]:
        """epoch -> optimizer updates of each model in it (the schedules run over these)."""
        return stream.num_batches

    def reserved_ids(self, config, tokenizer: Tokenizer, label_names: Sequence[str]) -> list[int]:
        """Token ids the conditioning cannot do without (`data.compact_vocab` keeps them whatever
        their counts)."""
        return []

    def generation(self, k: int, prefix: Sequence[int]) -> dict:
        """Arguments of `model.decode.generate_for_class` that sample class k (`prefix`: its
        label prefix)."""
        raise NotImplementedError(f"a {self.name} model has no classes to sample")

    def export(
        self, folder: Path, model_config: gpt2.GPT2Config, params: Any, label_names: Sequence[str]
    ) -> None:
        """The trained model(s) as Hugging Face folder(s)."""
        save_pretrained(model_config, params, folder)


class PerClass(Conditioning):
    name = "per_class"
    stacked = True

    def init_params(self, params, num_classes):
        # one program: op by op, every leaf shape was its own XLA compilation
        stack = jax.jit(lambda p: jax.tree_util.tree_map(lambda x: jnp.stack([x] * num_classes), p))
        return stack(params)

    def class_rows(self, config, ds, tokenizer, k, scoring=True):
        # every class model reads the text as it is
        return pipeline.rows(config, ds, tokenizer, scoring=scoring)

    def train_stream(self, config, train, tokenizer, batch_size=None):
        check_every_class_present(train, "training set")
        spec = pipeline.batch_spec(config, batch_size)
        return PerClassStream(
            tuple(
                TrainStream(
                    pipeline.rows(
                        config, train.subset(np.flatnonzero(train.labels == k)), tokenizer
                    ),
                    spec,
                    config.seed,
                    k,
                )
                for k in range(train.num_classes)
            )
        )

    def steps_per_model(self, stream):
        return stream.steps_per_model  # each class model its own number of updates and schedule

    def generation(self, k, prefix):
        return dict(class_index=k, prefix_tokens=())

    def export(self, folder, model_config, params, label_names):
        host = jax.device_get(params)  # sliced on the host: on the device, one compile a leaf
        for k, name in enumerate(label_names):
            save_pretrained(
                model_config, jax.tree_util.tree_map(lambda x: x[k], host), Path(folder) / name
            )


class LabelPrefix(Conditioning):
    name = "label_prefix"

    def class_rows(self, config, ds, tokenizer, k, scoring=True):
        """Every text after class k's label prefix; every class gets one text budget, so the
        classes score the same text tokens."""
        return pipeline.rows(config, ds, tokenizer, np.full(len(ds), k), scoring)

    def train_stream(self, config, train, tokenizer, batch_size=None):
        return TrainStream(
            pipeline.rows(config, train, tokenizer, train.labels),
            pipeline.batch_spec(config, batch_size),
            config.seed,
        )

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

    def class_rows(self, config, ds, tokenizer, k, scoring=True):
        """One row per text (the head reads the text once, whatever the class)."""
        rows = pipeline.rows(config, ds, tokenizer, scoring=scoring)
        if len(rows.inputs) != len(ds):
            raise DataError(
                "the discriminative conditioning reads one row per text: set "
                f"{pipeline.long_text(config, scoring)[2][0]} to 'truncate' or 'error'"
            )
        return rows

    def decision_slices(self, config, ds, tokenizer):
        return (self.class_rows(config, ds, tokenizer, None, scoring=False),)

    def train_stream(self, config, train, tokenizer, batch_size=None):
        raise DataError(
            "the discriminative conditioning trains on the decision: set train.objective='decision'"
        )

    def export(self, folder, model_config, params, label_names):
        """The GPT-2 body as a Hugging Face folder, the head beside it (head.npz)."""
        save_pretrained(model_config, params["body"], folder)
        np.savez(
            Path(folder) / "head.npz",
            **{k: np.asarray(v) for k, v in params["head"].items()},
            label_names=np.asarray(label_names),
        )


CONDITIONINGS: dict[str, Conditioning] = {
    c.name: c for c in (PerClass(), LabelPrefix(), Unconditional(), Discriminative())
}


def get(name: str) -> Conditioning:
    if name not in CONDITIONINGS:
        raise DataError(f"model.conditioning must be one of {tuple(CONDITIONINGS)}, got {name!r}")
    return CONDITIONINGS[name]


def load_data(config, splits: Sequence[str], info: dict | None = None):
    """(tokenizer, the tokenized splits `config.model.conditioning` uses). With
    `data.compact_vocab` the tokenizer and splits are in the compact ids: a trained run's
    (`info`), else those of this training split (`data/compact.py`)."""
    d = config.data
    tok = load_tokenizer(d.tokenizer, d.tokenizer_fallback, d.cache_dir)
    cond = get(config.model.conditioning)
    with one_pool():  # every split's tokenization in one pool of processes
        ds = cond.datasets(config, tok, splits)
    if d.compact_vocab > 0:
        always = cond.reserved_ids(config, tok, ds["train"].label_names)
        tok, ds, _ = compact.apply(
            ds, tok, int(d.compact_vocab), (info or {}).get("compact_vocab_ids"), always
        )
    return tok, ds
