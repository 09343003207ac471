"""Score many rows on the accelerator: the host loop around the pure scorer (`score.py`).

One compiled call per (length bucket) shape: rows are sorted by length, padded to a few bucket
lengths (`data.batching.scoring_batches`), put on the device ahead of use, and each batch is
scored against all K stacked class models at once (vmap over the class axis) or by one model.
Results are fetched a few batches late, so the device never waits for the host. The rows of
a batch are split over every device of every process, and every process gets all results.
"""

from __future__ import annotations

import collections
import functools
from typing import Callable, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from gencls_jax import score, sharding
from gencls_jax.data.batching import scoring_batches
from gencls_jax.data.prefetch import prefetch_to_device
from gencls_jax.data.rows import Rows
from gencls_jax.model import GPT2Config


@functools.partial(jax.jit, static_argnames="config")
def stacked_models(stacked_params, inputs, targets, weights, config):
    """[rows, K] log-likelihoods of K stacked class models."""
    return score.class_row_log_likelihoods(stacked_params, inputs, targets, weights, config)


@functools.partial(jax.jit, static_argnames="config")
def one_model(params, inputs, targets, weights, config):
    """[rows, 1] log-likelihoods of one model."""
    return score.row_log_likelihood(params, inputs, targets, weights, config)[:, None]


def score_rows(
    params,
    rows: Rows,
    n_texts: int,
    config: GPT2Config,
    *,
    score_fn: Callable = stacked_models,
    batch_size: int,
    bucket_lengths: Sequence[int],
    max_len: int,
    prefetch: int = 2,
    desc: str = "scoring",
    progress: bool = True,
) -> np.ndarray:
    """Per text, the sum over its rows of `score_fn(params, inputs, targets, weights, config)`
    ([rows, K]: `stacked_models`, `one_model`, or a mode's own): [n_texts, K]."""
    fn = score_fn
    # rows over the 'data' axis of the params' own mesh (class-sharded params: each class group
    # scores every row with its models), else over every device of every process
    mesh = sharding.mesh_of(params) or sharding.make_mesh()
    batches = list(scoring_batches(rows, batch_size, bucket_lengths, max_len, mesh.shape["data"]))
    per_row = None
    device_batches = prefetch_to_device(
        ({k: b[k] for k in ("inputs", "targets", "weights")} for _, b in batches),
        prefetch,
        lambda b: sharding.shard_batch(b, mesh),
    )
    pending: collections.deque = collections.deque()  # (row indices, device result) in flight

    def collect() -> None:
        nonlocal per_row
        idx, out = pending.popleft()
        out = sharding.to_host(out)  # every process gets every row's result
        if per_row is None:
            per_row = np.zeros((len(rows.inputs), out.shape[1]), np.float64)
        keep = idx >= 0
        per_row[idx[keep]] = out[keep]

    try:
        for (idx, _), b in tqdm(
            zip(batches, device_batches),
            total=len(batches),
            desc=desc,
            leave=False,
            disable=not progress,
        ):
            pending.append(
                (idx, fn(params, b["inputs"], b["targets"], b["weights"], config=config))
            )
            if len(pending) > max(prefetch, 1):
                # fetch results a few batches late: the device never waits for the host
                collect()
    finally:  # also on an exception (Ctrl-C): the prefetching thread stops now, not at exit
        device_batches.close()
    while pending:
        collect()
    totals = np.zeros((n_texts, 0 if per_row is None else per_row.shape[1]), np.float64)
    if per_row is not None:
        np.add.at(totals, rows.text_index, per_row)
    return totals
