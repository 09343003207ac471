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
    texts = [np.asarray(t, np.int32) for t in token_lists]
    pre = [
        np.asarray(prefixes[i] if prefixes is not None else (), np.int32) for i in range(len(texts))
    ]
    # each text's tokens to score, EOS included
    sizes = np.fromiter((t.size for t in texts), np.int64, len(texts)) + eos.size
    bad = (sizes == eos.size) | ((sizes > context) & (long_text == "error"))
    if np.any(bad):  # the first text that has no tokens or is too long for 'error'
        i = int(np.argmax(bad))
        name = ids[i] if ids else i
        if sizes[i] == eos.size:
            raise DataError(f"text {name}: no tokens")
        raise DataError(
            f"text {name}: {sizes[i]} tokens, more than {limit}; "
            f"set {keys[0]} to 'truncate' or 'window'"
        )
    prefixed = prefixes is not None  # a prefixed text's windows start with BOS + prefix too
    inputs, targets, weights = first_rows(texts, pre, eos, sizes, context, bos_id)
    windowed = np.flatnonzero(sizes > context) if long_text == "window" else ()
    if not len(windowed):  # one row per text
        return Rows(inputs, targets, weights, np.arange(len(texts), dtype=np.int64))
    more = {
        int(i): windows(np.concatenate([texts[i], eos]), pre[i], context, stride, bos_id, prefixed)
        for i in windowed
    }
    rows: list[tuple] = []
    for i, first in enumerate(zip(inputs, targets, weights)):
        rows += [(i, *first), *((i, *w) for w in more.get(i, ()))]
    index, inputs, targets, weights = (list(x) for x in zip(*rows))
    return Rows(inputs, targets, weights, np.asarray(index, np.int64))


def first_rows(
    texts: list[np.ndarray],
    pre: list[np.ndarray],
    eos: np.ndarray,
    sizes: np.ndarray,
    context: int,
    bos_id: int,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Every text's first row, all at once: BOS + prefix + t[:end-1] predicts prefix + t[:end],
    t the text with its EOS, end = min(len(t), context), the prefix at weight 0.

    Why vectorised: a test set's rows are rebuilt for every scoring pass (one per label prefix),
    and the device waits for them; a few NumPy calls a text took ~1 s for IMDB's 25,000 on a
    slow host. Here: one gather over the texts' [prefix, text, EOS] blocks laid end to end, the
    rows views of three flat arrays."""
    n = len(texts)
    if n == 0:
        return [], [], []
    plen = np.fromiter((p.size for p in pre), np.int64, n)
    blocks = np.concatenate([a for p, t in zip(pre, texts) for a in (p, t, eos)])
    block_start = np.cumsum(plen + sizes) - (plen + sizes)
    lengths = plen + np.minimum(sizes, context)  # a row's tokens (inputs and targets alike)
    row_start = np.cumsum(lengths) - lengths
    # row r's token j is block r's token j: one gather from the blocks for all the targets
    src = np.arange(int(lengths.sum())) + np.repeat(block_start - row_start, lengths)
    flat_targets = blocks[src]
    flat_inputs = blocks[src - 1]  # shifted right by one, BOS in front
    flat_inputs[row_start] = bos_id
    flat_weights = np.ones(src.size, np.float32)
    prefix_at = np.repeat(row_start - (np.cumsum(plen) - plen), plen) + np.arange(int(plen.sum()))
    flat_weights[prefix_at] = 0.0  # label prefixes condition, they are not scored
    ends = row_start + lengths
    return (
        [flat_inputs[i:j] for i, j in zip(row_start, ends)],
        [flat_targets[i:j] for i, j in zip(row_start, ends)],
        [flat_weights[i:j] for i, j in zip(row_start, ends)],
    )


def windows(
    t: np.ndarray, p: np.ndarray, context: int, stride: int, bos_id: int, prefixed: bool
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(inputs, targets, weights) of the windows after a long text's first row: each advances by
    `stride` tokens, keeps the rest as (unscored) context, and scores only its new tokens.
    Prefixed rows (label prefixes) start with BOS + the prefix; plain ones with text only."""
    out = []
    scored = min(context, t.size)
    while scored < t.size:
        stop = min(scored + stride, t.size)
        if not prefixed:
            # window over t[start:stop]: inputs t[start:stop-1] predict t[start+1:stop]
            start = max(stop - context - 1, 0)
            w = np.zeros(stop - start - 1, np.float32)
            w[scored - start - 1 :] = 1.0
            out.append((t[start : stop - 1], t[start + 1 : stop], w))
        else:
            # as the first row: BOS + prefix + t[start:stop-1] predicts prefix + t[start:stop]
            start = max(stop - context, 0)
            w = np.zeros(p.size + stop - start, np.float32)
            w[p.size + scored - start :] = 1.0
            inputs = np.concatenate([[bos_id], p, t[start : stop - 1]]).astype(np.int32)
            out.append((inputs, np.concatenate([p, t[start:stop]]), w))
        scored = stop
    return out


def row_lengths(rows: Rows) -> np.ndarray:
    return np.fromiter((len(x) for x in rows.inputs), np.int64, len(rows.inputs))


def scored_tokens(rows: Rows, n_texts: int) -> np.ndarray:
    """[n_texts] tokens each text has scored (its weights summed over its rows): the per-token
    rule's |x|."""
    out = np.zeros(n_texts, np.float64)
    np.add.at(out, rows.text_index, [w.sum() for w in rows.weights])
    return out
