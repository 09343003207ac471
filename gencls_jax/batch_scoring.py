"""Score many rows on the accelerator: the host loop around the pure scorer (`score.py`).

One compiled call per (length bucket) shape: rows are sorted by length, padded to a few bucket
lengths (`data.batching.scoring_batches`), put on the device ahead of use, and each batch is
scored against all K stacked class models at once (vmap over the class axis) or by one model.
Results are fetched a few batches late, so the device never waits for the host.
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
from gencls_jax.data.rows import Rows
from gencls_jax.model import GPT2Config


@functools.partial(jax.jit, static_argnames="config")
def _score_classes(stacked_params, inputs, targets, weights, config):
    return score.class_row_log_likelihoods(stacked_params, inputs, targets, weights, config)


@functools.partial(jax.jit, static_argnames="config")
def _score_one(params, inputs, targets, weights, config):
    return score.row_log_likelihood(params, inputs, targets, weights, config)[:, None]


def score_rows(
    params,
    rows: Rows,
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
    device_batches = prefetch_to_device(
        ((b["inputs"], b["targets"], b["weights"]) for _, b in batches), prefetch
    )
    pending: collections.deque = collections.deque()  # (row indices, device result) in flight

    def collect() -> None:
        idx, out = pending.popleft()
        keep = idx >= 0
        per_row[idx[keep]] = np.asarray(out)[keep]

    for (idx, _), (inputs, targets, weights) in tqdm(
        zip(batches, device_batches),
        total=len(batches),
        desc=desc,
        leave=False,
        disable=not progress,
    ):
        pending.append((idx, fn(params, inputs, targets, weights, config=config)))
        if len(pending) > max(prefetch, 1):
            # fetch results a few batches late: the device never waits for the host
            collect()
    while pending:
        collect()
    totals = np.zeros((n_texts, k), np.float64)
    np.add.at(totals, rows.text_index, per_row)
    return totals
