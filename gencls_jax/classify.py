"""Score whole splits against every class: the K log-likelihoods of each text.

One compiled call per (length bucket) shape: rows are sorted by length, padded to a few bucket
lengths, and each batch is scored against all K class models at once (vmap over the stacked
class axis). Label-prefix models score each class's prefixed rows with the one shared model.
"""

from __future__ import annotations

import collections
import functools
from typing import Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from gencls_jax import score
from gencls_jax.data.batching import scoring_batches
from gencls_jax.data.prefetch import prefetch_to_device
from gencls_jax.data.rows import scored_tokens
from gencls_jax.model import GPT2Config


@functools.partial(jax.jit, static_argnames="config")
def _score_classes(stacked_params, inputs, targets, weights, config):
    return score.class_row_log_likelihoods(stacked_params, inputs, targets, weights, config)


@functools.partial(jax.jit, static_argnames="config")
def _score_one(params, inputs, targets, weights, config):
    return score.row_log_likelihood(params, inputs, targets, weights, config)[:, None]


def score_rows(
    params,
    rows: score.Rows,
    n_texts: int,
    config: GPT2Config,
    *,
    stacked: bool,
    batch_size: int,
    bucket_lengths: Sequence[int],
    max_len: int,
    prefetch: int = 2,
    desc: str = "scoring",
    progress: bool = True,
) -> np.ndarray:
    """Sum of row log-likelihoods per text: [n_texts, K] if `stacked` else [n_texts, 1]."""
    fn = _score_classes if stacked else _score_one
    batches = list(scoring_batches(rows, batch_size, bucket_lengths, max_len))
    k = jax.tree_util.tree_leaves(params)[0].shape[0] if stacked else 1
    per_row = np.zeros((len(rows.inputs), k), np.float64)
    device_batches = prefetch_to_device((b[1:] for b in batches), prefetch)
    pending: collections.deque = collections.deque()  # (row indices, device result) in flight

    def collect() -> None:
        idx, out = pending.popleft()
        keep = idx >= 0
        per_row[idx[keep]] = np.asarray(out)[keep]

    for (idx, *_), (inputs, targets, weights) in tqdm(
        zip(batches, device_batches), total=len(batches), desc=desc, leave=False, disable=not progress
    ):
        pending.append((idx, fn(params, inputs, targets, weights, config=config)))
        if len(pending) > max(prefetch, 1):  # fetch results a few batches late: the device never waits for the host
            collect()
    while pending:
        collect()
    totals = np.zeros((n_texts, k), np.float64)
    np.add.at(totals, rows.text_index, per_row)
    return totals


def class_log_likelihoods(
    params,
    ds,
    tokenizer,
    config,
    model_config: GPT2Config,
    desc: str = "scoring",
) -> tuple[np.ndarray, np.ndarray]:
    """([N, K] log p(text | class), [N] scored tokens per text) for a tokenized Dataset.

    per_class: `params` are stacked over classes; label_prefix: one model, K prefixed passes,
    which score the same text tokens (the rows give every class one text budget).
    """
    from gencls_jax.data.pipeline import scoring_rows

    kw = dict(
        batch_size=config.eval.batch_size,
        bucket_lengths=tuple(config.data.bucket_lengths),
        max_len=config.data.max_len,
        prefetch=config.data.prefetch,
        progress=bool(config.train.get("progress_bar", True)),
    )
    if config.model.conditioning == "per_class":
        rows = scoring_rows(config, ds, tokenizer)
        return score_rows(params, rows, len(ds), model_config, stacked=True, desc=desc, **kw), scored_tokens(rows, len(ds))
    cols, counts = [], []
    for c, name in enumerate(ds.label_names):
        rows = scoring_rows(config, ds, tokenizer, label=c)
        cols.append(score_rows(params, rows, len(ds), model_config, stacked=False, desc=f"{desc} [{name}]", **kw))
        counts.append(scored_tokens(rows, len(ds)))
    if any(not np.array_equal(n, counts[0]) for n in counts):
        raise RuntimeError("label prefixes: the classes scored different numbers of text tokens")
    return np.concatenate(cols, axis=1), counts[0]
