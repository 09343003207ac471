"""The config-driven data pipeline: `config.data` -> tokenized splits -> training / scoring streams.

load_datasets: read (tfds with local fallback, jsonl, csv, aclImdb), resolve labels, clean,
tokenize (cached), hold out a stratified validation split, apply the per-class limit, merge
extra (synthetic) training texts. train_stream / scoring_rows turn a split into the batches
and rows of `batching` and `rows`, for per-class models or one label-prefixed model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from gencls_jax.data import sources
from gencls_jax.data.batching import BatchSpec, PerClassStream, TrainStream
from gencls_jax.data.clean import clean_texts
from gencls_jax.data.rows import make_rows
from gencls_jax.data.sources import DataError, Dataset, RawSplit
from gencls_jax.data.splits import per_class_subset, stratified_split
from gencls_jax.data.tokenize import Tokenizer, load_tokenizer, tokenize_texts
from gencls_jax.score import Rows

log = logging.getLogger(__name__)

SOURCES = ("tfds", "jsonl", "csv", "aclimdb")
CONDITIONINGS = ("per_class", "label_prefix", "unconditional")


def split_path(d, split: str) -> str:
    paths = {"train": d.train_path, "test": d.test_path, "unsup": d.unsup_path}
    if split not in paths:
        raise DataError(f"unknown split {split!r}; known: {sorted(paths)}")
    if not paths[split]:
        raise DataError(f"data.{split}_path is not set")
    return paths[split]


def _read_file(d, path: str, kind: str, split: str) -> RawSplit:
    reader = sources.read_csv if kind == "csv" else sources.read_jsonl
    return reader(path, d.text_field, d.label_field, d.id_field, labeled=split != "unsup")


def _kind_of(path: str) -> str:
    return "csv" if Path(path).name.lower().removesuffix(".gz").endswith(".csv") else "jsonl"


def read_split(d, split: str) -> tuple[RawSplit, tuple[str, ...]]:
    """The raw texts of 'train' | 'test' | 'unsup' from `d.source`, and any label names the source declares."""
    if d.source not in SOURCES:
        raise DataError(f"data.source must be one of {SOURCES}, got {d.source!r}")
    if d.source == "tfds":
        try:
            return sources.read_tfds(d.tfds_name, d.tfds_splits[split], d.tfds_data_dir, d.text_field, d.label_field)
        except DataError as e:
            if not d.fallback_to_local:
                raise
            path = split_path(d, split)
            log.warning("%s; falling back to the local file %s (data.fallback_to_local)", e, path)
            return _read_file(d, path, _kind_of(path), split), ()
    if d.source == "aclimdb":
        if not d.aclimdb_path:
            raise DataError("data.aclimdb_path is not set (the aclImdb folder or aclImdb_v1.tar.gz)")
        return sources.read_aclimdb(d.aclimdb_path, split), ()
    return _read_file(d, split_path(d, split), d.source, split), ()


def _prepare(d, raw: RawSplit, names: Sequence[str], tok: Tokenizer, origin: str) -> Dataset:
    """Labels resolved, texts cleaned and tokenized (through the cache)."""
    ds = sources.to_dataset(raw, names, origin)
    texts = clean_texts(raw.texts, raw.where, d.clean_html)
    tokens = tokenize_texts(texts, tok, d.cache_dir, d.tokenize_batch_size, progress=len(texts) > 5000)
    return Dataset(texts, ds.labels, ds.ids, ds.origin, ds.label_names, tokens)


def load_datasets(config, splits: Sequence[str] = ("train", "val", "test"), tokenizer: Tokenizer | None = None
                  ) -> dict[str, Dataset]:
    """Tokenized splits named in `splits` ('train', 'val', 'test', 'unsup'); val is held out of train."""
    d = config.data
    tok = tokenizer or load_tokenizer(d.tokenizer, d.tokenizer_fallback)
    raw_train, declared = read_split(d, "train")
    names = tuple(d.label_names) or declared or sources.infer_label_names(raw_train)
    full = _prepare(d, raw_train, names, tok, "real")
    sources.check_every_class_present(full, f"{raw_train.identity}")
    out: dict[str, Dataset] = {}
    tr, va = stratified_split(full.labels, d.val_size, config.seed)
    train = full.subset(tr)
    if d.per_class_limit > 0:
        train = train.subset(per_class_subset(train.labels, d.per_class_limit, config.seed))
    if d.extra_train_path:
        raw_extra = sources.read_jsonl(d.extra_train_path, d.text_field, d.label_field, d.id_field)
        extra = _prepare(d, raw_extra, names, tok, "synthetic")
        if (extra.labels < 0).any():
            raise DataError(f"{raw_extra.where[int(np.argmax(extra.labels < 0))]}: extra training text without a label")
        train = sources.concat(train, extra)
    out["train"] = train
    if "val" in splits:
        out["val"] = full.subset(va)
    for split in ("test", "unsup"):
        if split in splits:
            raw, _ = read_split(d, split)
            out[split] = _prepare(d, raw, names, tok, "real")
    for k, v in out.items():
        log.info("%s: %d texts, per class %s, synthetic %d", k, len(v), v.class_counts().tolist(), int((v.origin == "synthetic").sum()))
    return out


def label_prefixes(tokenizer: Tokenizer, template: str, label_names: Sequence[str]) -> list[np.ndarray]:
    """Token ids of `template.format(label_name=...)` for each class (the label-prefix conditioning)."""
    try:
        texts = [template.format(label_name=n) for n in label_names]
    except (KeyError, IndexError) as e:
        raise DataError(f"data.label_prefix_template {template!r}: only {{label_name}} may be used ({e})") from None
    return [np.asarray(t, np.int32) for t in tokenizer.encode_batch(texts)]


def batch_spec(config, batch_size: int | None = None) -> BatchSpec:
    d = config.data
    return BatchSpec(d.batching, batch_size or config.train.batch_size, d.max_len, tuple(d.bucket_lengths))


def _rows(config, ds: Dataset, tok: Tokenizer, prefixes=None) -> Rows:
    d = config.data
    return make_rows(ds.tokens.to_lists(), d.max_len, tok.bos_id, d.long_text, d.window_stride,
                     tok.eos_id if d.append_eos else None, prefixes, ds.ids)


def train_stream(config, train: Dataset, tokenizer: Tokenizer, batch_size: int | None = None
                 ) -> PerClassStream | TrainStream:
    """per_class: a PerClassStream ([K, B, T] batches); label_prefix: one TrainStream ([B, T]) of
    prefixed texts; unconditional: one TrainStream of the texts, labels ignored."""
    conditioning = config.model.conditioning
    if conditioning not in CONDITIONINGS:
        raise DataError(f"model.conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
    spec = batch_spec(config, batch_size)
    if conditioning == "per_class":
        sources.check_every_class_present(train, "training set")
        return PerClassStream(tuple(
            TrainStream(_rows(config, train.subset(np.flatnonzero(train.labels == k)), tokenizer), spec, config.seed, k)
            for k in range(train.num_classes)
        ))
    if conditioning == "unconditional":  # one LM of the texts alone (in-domain pretraining)
        return TrainStream(_rows(config, train, tokenizer), spec, config.seed)
    prefixes = label_prefixes(tokenizer, config.data.label_prefix_template, train.label_names)
    return TrainStream(_rows(config, train, tokenizer, [prefixes[k] for k in train.labels]), spec, config.seed)


def scoring_rows(config, ds: Dataset, tokenizer: Tokenizer, label: int | None = None) -> Rows:
    """Rows to score `ds` (for `batching.scoring_batches`); with `label`, prefixed by that class's label prefix."""
    if label is None:
        return _rows(config, ds, tokenizer)
    prefix = label_prefixes(tokenizer, config.data.label_prefix_template, ds.label_names)[label]
    return _rows(config, ds, tokenizer, [prefix] * len(ds))
