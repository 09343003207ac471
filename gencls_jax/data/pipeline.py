"""The config-driven data pipeline: `config.data` -> tokenized splits -> training / scoring streams.

load_datasets: read (tfds with local fallback, jsonl, csv, aclImdb), resolve labels, choose the
rows by label (stratified validation hold-out, per-class limit, test sample), then clean and
tokenize (cached) only the chosen texts, and merge extra (synthetic) training texts.
`tokenize_dataset` is that cleaning and tokenization, also for texts scored the way test texts
are (synthetic samples, users' texts). `rows` turns a split into the rows of `data.rows`
(label-prefixed or not; training's or scoring's, `long_text`); `conditioning.py` makes the
training streams and scoring passes.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from gencls_jax.data import sources
from gencls_jax.data.batching import BatchSpec
from gencls_jax.data.clean import clean_texts
from gencls_jax.data.rows import LONG_TEXT_MODES, Rows, make_rows
from gencls_jax.data.sources import Dataset, RawSplit
from gencls_jax.data.splits import per_class_sample, stratified_split
from gencls_jax.data.tokenize import Tokenizer, load_tokenizer, tokenize_texts
from gencls_jax.errors import DataError

log = logging.getLogger(__name__)

SOURCES = ("tfds", "jsonl", "csv", "aclimdb")


def split_path(d, split: str) -> str:
    paths = {"train": d.train_path, "test": d.test_path, "unsup": d.unsup_path}
    if split not in paths:
        raise DataError(f"unknown split {split!r}; known: {sorted(paths)}")
    if not paths[split]:
        raise DataError(f"data.{split}_path is not set")
    return paths[split]


def _read_file(d, path: str, split: str, default: str = "jsonl") -> RawSplit:
    """A local jsonl or csv file, its format told by its name as predict tells it (a train.csv
    is csv whatever data.source says), else `default`."""
    kind = sources.format_by_name(path)
    reader = sources.read_csv if (kind or default) == "csv" else sources.read_jsonl
    return reader(path, d.text_field, d.label_field, d.id_field, labeled=split != "unsup")


def read_split(d, split: str) -> tuple[RawSplit, tuple[str, ...]]:
    """The raw texts of 'train' | 'test' | 'unsup' from `d.source`, and any label names the source
    declares."""
    if d.source not in SOURCES:
        raise DataError(f"data.source must be one of {SOURCES}, got {d.source!r}")
    if d.source == "tfds":
        try:
            return sources.read_tfds(
                d.tfds_name, d.tfds_splits[split], d.tfds_data_dir, d.text_field, d.label_field
            )
        except DataError as e:
            if not d.fallback_to_local:
                raise
            path = split_path(d, split)
            log.warning("%s; reading the local file %s instead (data.fallback_to_local)", e, path)
            return _read_file(d, path, split), ()
    if d.source == "aclimdb":
        if not d.aclimdb_path:
            raise DataError(
                "data.aclimdb_path is not set (the aclImdb folder or aclImdb_v1.tar.gz)"
            )
        return sources.read_aclimdb(d.aclimdb_path, split), ()
    return _read_file(d, split_path(d, split), split, d.source), ()


def _read_ahead(d, names: Sequence[str]) -> dict[str, Callable[[], tuple]]:
    """For each split of `names`, what gives its `read_split`: local files are read in a thread
    from now on, while the training texts are tokenized (this process only waits on the pool
    then), one file after the other; a bad file's error comes where its split is asked for. tfds
    is read when asked (it redirects this process's stdout while it reads)."""
    if d.source == "tfds" or not names:
        return {s: functools.partial(read_split, d, s) for s in names}
    pool = ThreadPoolExecutor(1, thread_name_prefix="read_ahead")
    futures = {s: pool.submit(read_split, d, s) for s in names}
    pool.shutdown(wait=False)  # the thread ends after the last file
    return {s: f.result for s, f in futures.items()}


def tokenize_dataset(
    config,
    ds: Dataset,
    tokenizer: Tokenizer,
    where: Sequence[str] | None = None,
    cache: bool = True,
) -> Dataset:
    """`ds` with its texts cleaned (`data.clean_html`) and tokenized, through the cache unless
    `cache` is False, without EOS (the rows add it): every text is prepared this way, training
    and test splits, synthetic samples and users' texts alike. `where` names each text in
    errors (default: its id); a text left empty is a DataError."""
    d = config.data
    texts = clean_texts(ds.texts, ds.ids if where is None else where, d.clean_html)
    tokens = tokenize_texts(
        texts,
        tokenizer,
        d.cache_dir if cache else "",
        d.tokenize_batch_size,
        progress=len(texts) > 5000 and bool(config.progress_bars),
        workers=d.tokenize_workers,
        pool_min_chars=d.tokenize_pool_min_chars,
    )
    return dataclasses.replace(ds, texts=texts, tokens=tokens)


def _tokenized_parts(
    config, ds: Dataset, where: Sequence[str], parts: dict[str, np.ndarray], tok: Tokenizer
) -> dict[str, Dataset]:
    """The rows `parts[name]` of the untokenized `ds`, tokenized together (one cache entry): the
    texts no part uses are never tokenized."""
    used = np.unique(np.concatenate(list(parts.values())))
    done = tokenize_dataset(config, ds.subset(used), tok, [where[i] for i in used])
    return {name: done.subset(np.searchsorted(used, idx)) for name, idx in parts.items()}


def _check_label_kind(raw: RawSplit, train: RawSplit) -> None:
    """Integer labels count as class indices only where the training labels are integers too:
    read against another run's class names (e.g. IMDB's 0/1 against four topic names) they
    would silently become classes 0 and 1. (Names are safe: they must match a class name.)"""
    if sources.label_kind(raw) == "index" and sources.label_kind(train) == "name":
        raise DataError(
            f"{raw.identity}: its labels are integers, but the training labels "
            f"({train.identity}) are class names: give its rows the class names"
        )


def _label_names(d, raw_train: RawSplit, declared: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    """The class names (`data.label_names`, else those the source declares, else the training
    labels) and where they came from, for the error of a label not among them."""
    if d.label_names:
        return tuple(d.label_names), (
            "data.label_names; --config.data.label_names=() takes them from the training data"
        )
    if declared:
        return declared, f"declared by {raw_train.identity}"
    return sources.infer_label_names(raw_train), f"the labels of {raw_train.identity}"


def _read_added_class(d, folder: str, names: Sequence[str]) -> tuple[str, dict[str, RawSplit]]:
    """(class name, its raw 'train' and 'val' texts) of a class `--mode=add_class` added to a run:
    `folder` holds train.jsonl and val.jsonl, every text labelled with the class's name."""
    raws = {
        split: sources.read_jsonl(
            str(Path(folder) / f"{split}.jsonl"), d.text_field, d.label_field, d.id_field
        )
        for split in ("train", "val")
    }
    labels = sorted({str(v) for raw in raws.values() for v in raw.raw_labels})
    if len(labels) != 1 or labels[0] in names:
        raise DataError(
            f"data.added_classes: {folder} must hold the texts of one new class (labels {labels}; "
            f"the run's classes are {tuple(names)})"
        )
    return labels[0], raws


def split_seed(config) -> int:
    """The seed of which rows a run uses (`data.split_seed`, -1: the run's `seed`)."""
    return int(config.seed if config.data.split_seed < 0 else config.data.split_seed)


def load_datasets(
    config,
    splits: Sequence[str] = ("train", "val", "test"),
    tokenizer: Tokenizer | None = None,
    min_classes: int = 2,
) -> dict[str, Dataset]:
    """Tokenized splits named in `splits` ('train', 'val', 'test', 'unsup'); test is the seeded
    `eval.test_per_class` sample when that is > 0.

    Validation: the file `data.val_path` if set (e.g. SST-2's dev set), else held out of train
    (`data.val_size`, stratified). With `data.per_class_limit` = N, the run's data are N texts
    per class of train and the validation part is held out of those N (the small-data protocol:
    everything a run uses, early stopping included, comes from its N per class). A classifier's
    training data must hold `min_classes` classes (unconditional pretraining ignores labels: 1)."""
    d = config.data
    tok = tokenizer or load_tokenizer(d.tokenizer, d.tokenizer_fallback, d.cache_dir)
    raw_train, declared = read_split(d, "train")
    ahead = _read_ahead(d, [s for s in ("test", "unsup") if s in splits])
    names, names_from = _label_names(d, raw_train, declared)
    full = sources.to_dataset(raw_train, names, "real", names_from)
    sources.check_every_class_present(full, raw_train.identity, min_classes)
    added = []  # classes added to a trained run (--mode=add_class) come after its own
    for folder in d.added_classes:
        name, raws = _read_added_class(d, folder, names)
        names, added = (*names, name), [*added, raws]
    full = dataclasses.replace(full, label_names=tuple(names))
    pool, seed = np.arange(len(full)), split_seed(config)
    if d.per_class_limit > 0:
        pool = per_class_sample(full.labels, d.per_class_limit, seed, "train_limit")
    if d.val_path:
        tr, va = pool, np.zeros(0, np.int64)
    else:
        tr, va = (pool[i] for i in stratified_split(full.labels[pool], d.val_size, seed))
    parts = {"train": tr, **({"val": va} if "val" in splits and not d.val_path else {})}
    out = _tokenized_parts(config, full, raw_train.where, parts, tok)
    if "val" in splits and d.val_path:
        raw_val = _read_file(d, d.val_path, "val")
        _check_label_kind(raw_val, raw_train)
        val = sources.to_dataset(raw_val, names, "real", names_from)
        out["val"] = tokenize_dataset(config, val, tok, raw_val.where)
    for raws in added:  # each added class's own training and validation texts
        for split in ("train", "val"):
            if split in out:
                part = sources.to_dataset(raws[split], names, "real", "data.added_classes")
                part = tokenize_dataset(config, part, tok, raws[split].where)
                out[split] = sources.concat(out[split], part)
    if d.extra_train_path:
        raw_extra = _read_file(d, d.extra_train_path, "train")
        _check_label_kind(raw_extra, raw_train)
        extra = tokenize_dataset(
            config,
            sources.to_dataset(raw_extra, names, "synthetic", names_from),
            tok,
            raw_extra.where,
        )
        if (extra.labels < 0).any():
            raise DataError(
                f"{raw_extra.where[int(np.argmax(extra.labels < 0))]}: "
                "extra training text without a label"
            )
        out["train"] = sources.concat(out["train"], extra)
    for split in ("test", "unsup"):
        if split in splits:
            raw, _ = ahead[split]()
            _check_label_kind(raw, raw_train)
            ds = sources.to_dataset(raw, names, "real", names_from)
            idx = np.arange(len(ds))
            if split == "test" and config.eval.test_per_class > 0:
                idx = per_class_sample(ds.labels, int(config.eval.test_per_class), seed, "test")
            out.update(_tokenized_parts(config, ds, raw.where, {split: idx}, tok))
    for k, v in out.items():
        log.info(
            "%s: %d texts, per class %s, synthetic %d",
            k,
            len(v),
            v.class_counts().tolist(),
            int((v.origin == "synthetic").sum()),
        )
    return out


def label_prefixes(
    tokenizer: Tokenizer, template: str, label_names: Sequence[str]
) -> list[np.ndarray]:
    """Token ids of `template.format(label_name=...)` for each class (the label-prefix
    conditioning)."""
    try:
        texts = [template.format(label_name=n) for n in label_names]
    except (KeyError, IndexError) as e:
        raise DataError(
            f"data.label_prefix_template {template!r}: only {{label_name}} may be used ({e})"
        ) from None
    return [np.asarray(t, np.int32) for t in tokenizer.encode_batch(texts)]


def batch_spec(config, batch_size: int | None = None) -> BatchSpec:
    d = config.data
    return BatchSpec(
        d.batching,
        batch_size or config.train.batch_size,
        d.max_len,
        tuple(d.bucket_lengths),
        int(d.pack_texts),
    )


def long_text(config, scoring: bool = False) -> tuple[str, int, tuple[str, str]]:
    """(how a text longer than a row is read, the window stride, the keys they came from) of
    training rows (`data.long_text`, `data.window_stride`) or scoring rows (`eval.long_text`,
    `eval.window_stride` where set): a model trained on one row per text (the decision
    objective) may be scored with windows, and no evaluation setting changes what trains."""
    d, e = config.data, config.eval
    if not scoring:
        return d.long_text, d.window_stride, ("data.long_text", "data.window_stride")
    modes = ("", *LONG_TEXT_MODES)
    if e.long_text not in modes:
        raise DataError(
            f"eval.long_text must be one of {modes} ('' = data.long_text), got {e.long_text!r}"
        )
    if e.window_stride < 0:
        raise DataError(
            f"eval.window_stride must be >= 0 (0 = data.window_stride), got {e.window_stride}"
        )
    stride_key = "eval.window_stride" + ("" if e.window_stride else " (0: data.window_stride)")
    return (
        e.long_text or d.long_text,
        e.window_stride or d.window_stride,
        ("eval.long_text", stride_key),
    )


def scoring_rows_are_training_rows(config) -> bool:
    """Whether scoring reads long texts as training does: then a text's scoring rows are its
    training rows, token for token (the same `make_rows` call)."""
    return long_text(config, scoring=True)[:2] == long_text(config)[:2]


def rows(
    config, ds: Dataset, tok: Tokenizer, labels: np.ndarray | None = None, scoring: bool = False
) -> Rows:
    """The training rows of `ds` (`rows.make_rows` with `config.data`), or with `scoring` the
    rows it is scored on (long texts read as `long_text` says); with `labels`, text i carries
    class labels[i]'s label prefix, and every text is cut to the room the longest class prefix
    leaves, so that all classes train on and score the same text tokens."""
    d = config.data
    prefixes = room = None
    if labels is not None:
        per_class = label_prefixes(tok, d.label_prefix_template, ds.label_names)
        prefixes, room = [per_class[k] for k in labels], max(len(p) for p in per_class)
    mode, stride, keys = long_text(config, scoring)
    return make_rows(
        ds.tokens.to_lists(),
        d.max_len,
        tok.bos_id,
        mode,
        stride,
        tok.eos_id if d.append_eos else None,
        prefixes,
        ds.ids,
        room,
        keys,
    )
