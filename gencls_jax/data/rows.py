"""Token lists -> (inputs, targets, weights) rows of at most max_len: one recipe for training and
scoring.

A text x (EOS appended if configured) becomes inputs [BOS, x_0..x_{n-2}], targets [x_0..x_{n-1}]:
the first token is conditioned on BOS, exactly the objective of
`gencls_jax.score.sequence_log_likelihood`. Long texts are cut ('truncate'), split into strided
windows that score each token once ('window'), or refused ('error'). An optional per-text prefix
(the label-prefix conditioning) starts every row of its text, windows included, with weight 0: it
conditions, it is not scored. Prefixed texts get max_len - `prefix_room` tokens per row, the same
budget whatever their prefix, so every class scores (and trains on) the same text tokens.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from gencls_jax.errors import DataError

LONG_TEXT_MODES = ("error", "truncate", "window")


class Rows(NamedTuple):
    """Flat scoring rows for texts of any length. `text_index[r]` says which text row r scores."""

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    weights: list[np.ndarray]
    text_index: np.ndarray


def make_rows(
    token_lists: Sequence[Sequence[int]],
    max_len: int,
    bos_id: int,
    long_text: str = "error",
    stride: int | None = None,
    eos_id: int | None = None,
    prefixes: Sequence[Sequence[int]] | None = None,
    ids: Sequence[str] | None = None,
    prefix_room: int | None = None,
    keys: tuple[str, str] = ("data.long_text", "data.window_stride"),
) -> Rows:
    """Rows of at most `max_len` tokens for every text (EOS appended when `eos_id` is given);
    `rows.text_index[r]` is the text row r belongs to (several in window mode).

    long_text, for a text longer than a row's room for text:
      'error'    -- a DataError naming the text;
      'truncate' -- keep its first tokens;
      'window'   -- strided windows: each new window advances by `stride` tokens (default half
                    the room), keeps the rest as overlap for conditioning, and scores only the
                    new tokens. Every token is scored exactly once.
    prefixes: conditioning tokens per text (the label prefix). Every row of text i, each window
      included, starts with BOS + prefixes[i] at weight 0. Each text gets max_len - `prefix_room`
      text tokens per row (default room: the longest prefix given), the same budget whatever its
      prefix, so that every class scores (and trains on) the same text tokens.
    keys: the config keys `long_text` and `stride` came from, named in the errors (training
      rows: data.*; scoring rows may read eval.*, `pipeline.rows`).
    """
    if long_text not in LONG_TEXT_MODES:
        raise DataError(f"{keys[0]} must be one of {LONG_TEXT_MODES}, got {long_text!r}")
    if max_len < 2:
        raise DataError(f"data.max_len must be >= 2, got {max_len}")
    room = 0
    if prefixes is not None:
        longest = max((len(p) for p in prefixes), default=0)
        room = longest if prefix_room is None else prefix_room
        if longest > room:
            raise DataError(
                f"a label prefix of {longest} tokens is longer than the {room} tokens kept for it"
            )
        if room >= max_len:
            raise DataError(
                f"a label prefix of {room} tokens leaves no room for the text in "
                f"data.max_len={max_len}"
            )
    context = max_len - room  # text tokens per row
    limit = f"data.max_len={max_len}" + (f" less the {room}-token label prefix" if room else "")
    stride = stride or context // 2  # only windows use it
    if long_text == "window" and not 0 < stride <= context:
        raise DataError(f"{keys[1]} must be in (0, {limit}], got {stride}")
    eos = np.array([eos_id] if eos_id is not None else [], np.int32)
    inputs, targets, weights, index = [], [], [], []
    for i, text in enumerate(token_lists):
        if len(text) == 0:
            raise DataError(f"text {ids[i] if ids else i}: no tokens")
        t = np.concatenate([np.asarray(text, np.int32), eos])
        p = np.asarray(prefixes[i] if prefixes is not None else (), dtype=np.int32)
        if t.size > context:
            if long_text == "error":
                raise DataError(
                    f"text {ids[i] if ids else i}: {t.size} tokens, more than {limit}; "
                    f"set {keys[0]} to 'truncate' or 'window'"
                )
            if long_text == "truncate":
                t = t[:context]
        # First window: BOS + prefix + t[:context-1] predicts prefix + t[:context].
        end = min(context, t.size)
        inputs.append(np.concatenate([[bos_id], p, t[: end - 1]]).astype(np.int32))
        targets.append(np.concatenate([p, t[:end]]))
        weights.append(np.concatenate([np.zeros(p.size, np.float32), np.ones(end, np.float32)]))
        index.append(i)
        scored = end
        while scored < t.size:
            stop = min(scored + stride, t.size)
            if prefixes is None:
                # window over t[start:stop]: inputs t[start:stop-1] predict t[start+1:stop]
                start = max(stop - context - 1, 0)
                inputs.append(t[start : stop - 1])
                targets.append(t[start + 1 : stop])
                w = np.zeros(stop - start - 1, np.float32)
                w[scored - start - 1 :] = 1.0
            else:
                # as the first window: BOS + prefix + t[start:stop-1] predicts
                # prefix + t[start:stop]
                start = max(stop - context, 0)
                inputs.append(np.concatenate([[bos_id], p, t[start : stop - 1]]).astype(np.int32))
                targets.append(np.concatenate([p, t[start:stop]]))
                w = np.zeros(p.size + stop - start, np.float32)
                w[p.size + scored - start :] = 1.0
            weights.append(w)
            index.append(i)
            scored = stop
    return Rows(inputs, targets, weights, np.asarray(index, np.int64))


def row_lengths(rows: Rows) -> np.ndarray:
    return np.fromiter((len(x) for x in rows.inputs), np.int64, len(rows.inputs))


def scored_tokens(rows: Rows, n_texts: int) -> np.ndarray:
    """[n_texts] tokens each text has scored (its weights summed over its rows): the per-token
    rule's |x|."""
    out = np.zeros(n_texts, np.float64)
    np.add.at(out, rows.text_index, [w.sum() for w in rows.weights])
    return out
