"""Token lists -> (inputs, targets, weights) rows of at most max_len: one recipe for training and scoring.

A text x (EOS appended if configured) becomes inputs [BOS, x_0..x_{n-2}], targets [x_0..x_{n-1}]:
the first token is conditioned on BOS, exactly the objective of
`gencls_jax.score.sequence_log_likelihood`. Long texts follow `score.text_rows` ('truncate',
'window' = strided windows scoring each token once, 'error'). An optional per-text prefix
(the label-prefix conditioning) is prepended and gets weight 0: it conditions, it is not scored.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from gencls_jax.data.sources import DataError
from gencls_jax.score import LONG_TEXT_MODES, Rows, text_rows


def make_rows(
    token_lists: Sequence[np.ndarray],
    max_len: int,
    bos_id: int,
    long_text: str,
    stride: int,
    eos_id: int | None = None,
    prefixes: Sequence[np.ndarray] | None = None,
    ids: Sequence[str] | None = None,
) -> Rows:
    """Rows for every text; `rows.text_index[r]` is the text row r belongs to (several in window mode)."""
    if long_text not in LONG_TEXT_MODES:
        raise DataError(f"data.long_text must be one of {LONG_TEXT_MODES}, got {long_text!r}")
    if max_len < 2:
        raise DataError(f"data.max_len must be >= 2, got {max_len}")
    if long_text == "window" and not 0 < stride <= max_len:
        raise DataError(f"data.window_stride must be in (0, data.max_len={max_len}], got {stride}")
    stride = stride if long_text == "window" else max_len  # only windows use it
    eos = np.array([eos_id] if eos_id is not None else [], np.int32)
    seqs, n_prefix = [], np.zeros(len(token_lists), np.int64)
    for i, t in enumerate(token_lists):
        p = np.asarray(prefixes[i], np.int32) if prefixes is not None else np.zeros(0, np.int32)
        n_prefix[i] = len(p)
        seqs.append(np.concatenate([p, np.asarray(t, np.int32), eos]))
        if len(t) == 0:
            raise DataError(f"text {ids[i] if ids else i}: no tokens")
        if long_text == "error" and len(seqs[-1]) > max_len:
            raise DataError(
                f"text {ids[i] if ids else i}: {len(seqs[-1])} tokens, more than data.max_len={max_len}; "
                "set data.long_text to 'truncate' or 'window'"
            )
        if len(p) >= max_len:
            raise DataError(f"text {ids[i] if ids else i}: its prefix of {len(p)} tokens leaves no room in max_len={max_len}")
    rows = text_rows(seqs, max_len, bos_id, long_text, stride)
    if prefixes is not None:
        first = np.flatnonzero(np.r_[True, np.diff(rows.text_index) != 0])  # each text's first row
        for r in first:
            w = rows.weights[r].copy()
            w[: n_prefix[rows.text_index[r]]] = 0.0
            rows.weights[r] = w
    return rows


def row_lengths(rows: Rows) -> np.ndarray:
    return np.fromiter((len(x) for x in rows.inputs), np.int64, len(rows.inputs))
