"""Per-token scores of a few texts: the host loop behind explanations (`explain.py`).

`batch_scoring` sums each row on the device, which is all a decision needs; an explanation needs
every scored token's log-probability under every class, mapped back to the token of the text it
belongs to. The rows are the scorer's own (`pipeline.rows`: EOS, label prefixes, windows), so
the per-token values add up to the log-likelihoods the classifier decides with; prefix and
window-overlap tokens have weight 0 and are dropped here, so each text token appears once.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import numpy as np

from gencls_jax import score
from gencls_jax.data.batching import scoring_batches
from gencls_jax.data.rows import Rows
from gencls_jax.model import GPT2Config


@functools.partial(jax.jit, static_argnames="config")
def stacked_token_log_probs(stacked_params, inputs, targets, weights, config):
    """[rows, T, K] weighted per-token log-probabilities of K stacked class models."""
    return score.class_row_token_log_probs(stacked_params, inputs, targets, weights, config)


@functools.partial(jax.jit, static_argnames="config")
def one_model_token_log_probs(params, inputs, targets, weights, config):
    """[rows, T, 1] weighted per-token log-probabilities of one model."""
    return score.row_token_log_probs(params, inputs, targets, weights, config)[..., None]


def score_row_tokens(
    params,
    rows: Rows,
    config: GPT2Config,
    *,
    score_fn: Callable,
    batch_size: int,
    bucket_lengths: Sequence[int],
    max_len: int,
) -> list[np.ndarray]:
    """Per row r, float64 [len(row r), K]: `score_fn`'s per-token values (0 at weight 0), in the
    scorer's bucketed shapes (one compiled call per bucket length)."""
    out: list[np.ndarray | None] = [None] * len(rows.inputs)
    for idx, b in scoring_batches(rows, batch_size, bucket_lengths, max_len):
        values = np.asarray(
            score_fn(params, b["inputs"], b["targets"], b["weights"], config=config), np.float64
        )
        for j, r in enumerate(idx):
            if r >= 0:
                out[r] = values[j, : len(rows.inputs[r])]
    return out  # type: ignore[return-value]


def text_token_values(
    rows: Rows, per_row: Sequence[np.ndarray], n_texts: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(values, targets) per text: the values [n_i, K] and target token ids [n_i] of the text's
    weighted positions, in text order (its rows in order, each row left to right). `make_rows`
    scores every kept token of a text exactly once, so these are the text's scored tokens, EOS
    included."""
    values: list[list[np.ndarray]] = [[] for _ in range(n_texts)]
    targets: list[list[np.ndarray]] = [[] for _ in range(n_texts)]
    for r, i in enumerate(rows.text_index):
        keep = rows.weights[r] != 0
        values[i].append(per_row[r][keep])
        targets[i].append(np.asarray(rows.targets[r])[keep])
    k = per_row[0].shape[1] if len(per_row) else 0
    return (
        [np.concatenate(v) if v else np.zeros((0, k)) for v in values],
        [np.concatenate(t).astype(np.int64) if t else np.zeros(0, np.int64) for t in targets],
    )
