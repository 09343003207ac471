"""Token lists -> (inputs, targets, weights) rows of at most max_len: one recipe for training and scoring.

A text x (EOS appended if configured) becomes inputs [BOS, x_0..x_{n-2}], targets [x_0..x_{n-1}]:
the first token is conditioned on BOS, exactly the objective of
`gencls_jax.score.sequence_log_likelihood`. Long texts follow `score.text_rows` ('truncate',
'window' = strided windows scoring each token once, 'error'). An optional per-text prefix
(the label-prefix conditioning) starts every row of its text, windows included, with weight 0:
it conditions, it is not scored. Prefixed texts get max_len - `prefix_room` tokens per row, the
same budget whatever their prefix, so every class scores (and trains on) the same text tokens.
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
    prefix_room: int | None = None,
) -> Rows:
    """Rows for every text; `rows.text_index[r]` is the text row r belongs to (several in window mode).

    With `prefixes`, pass the longest prefix of all classes as `prefix_room` (default: the longest
    given) so that a text gets the same tokens whichever class's prefix it carries."""
    if long_text not in LONG_TEXT_MODES:
        raise DataError(f"data.long_text must be one of {LONG_TEXT_MODES}, got {long_text!r}")
    if max_len < 2:
        raise DataError(f"data.max_len must be >= 2, got {max_len}")
    room = 0
    if prefixes is not None:
        longest = max((len(p) for p in prefixes), default=0)
        room = longest if prefix_room is None else prefix_room
        if longest > room:
            raise DataError(f"a label prefix of {longest} tokens is longer than the {room} tokens kept for it")
        if room >= max_len:
            raise DataError(f"a label prefix of {room} tokens leaves no room for the text in data.max_len={max_len}")
    context = max_len - room  # text tokens per row
    less_prefix = f" less the {room}-token label prefix" if room else ""
    if long_text == "window" and not 0 < stride <= context:
        raise DataError(f"data.window_stride must be in (0, data.max_len={max_len}{less_prefix}], got {stride}")
    stride = stride if long_text == "window" else context  # only windows use it
    eos = np.array([eos_id] if eos_id is not None else [], np.int32)
    seqs = []
    for i, t in enumerate(token_lists):
        if len(t) == 0:
            raise DataError(f"text {ids[i] if ids else i}: no tokens")
        seqs.append(np.concatenate([np.asarray(t, np.int32), eos]))
        if long_text == "error" and len(seqs[-1]) > context:
            raise DataError(
                f"text {ids[i] if ids else i}: {len(seqs[-1])} tokens, more than data.max_len={max_len}{less_prefix}; "
                "set data.long_text to 'truncate' or 'window'"
            )
    return text_rows(seqs, context, bos_id, long_text, stride, prefixes)


def row_lengths(rows: Rows) -> np.ndarray:
    return np.fromiter((len(x) for x in rows.inputs), np.int64, len(rows.inputs))


def scored_tokens(rows: Rows, n_texts: int) -> np.ndarray:
    """[n_texts] tokens each text has scored (its weights summed over its rows): the per-token rule's |x|."""
    out = np.zeros(n_texts, np.float64)
    np.add.at(out, rows.text_index, [w.sum() for w in rows.weights])
    return out
