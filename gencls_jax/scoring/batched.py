"""Score a data set on the accelerator: the host loop around the pure scorer (`score.py`).

`score_dataset` is the one way texts are scored, for eval, predict, validation accuracy and
explanations alike. The conditioning supplies the rows (`class_rows(config, ds, tok, k)`: the
texts as class k's model reads them; k None when the K models are stacked and read the same
rows) and whether its parameters are stacked. Stacked class models score each batch at once
(vmap over the class axis); one label-prefix model takes one pass per class, each with that
class's prefix.

The loop: rows sorted by length into a few bucket shapes (`data.batching.scoring_batches`:
one compiled call per shape, `eval.bucket_lengths` or the training shapes), built and put on
the device ahead of use in a thread, every class pass in one stream (the next pass's rows are
built while the device scores this one's), results fetched a few batches late so the device
never waits for the host. The rows of a batch are split over every device
of every process, and every process gets all results.
"""

from __future__ import annotations

import collections
import functools
from typing import Any, Callable, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from gencls_jax.data.batching import scoring_batches, scoring_calls
from gencls_jax.data.prefetch import prefetch_to_device
from gencls_jax.data.rows import Rows, row_lengths, scored_tokens
from gencls_jax.data.sources import Dataset
from gencls_jax.scoring import score
from gencls_jax.system import sharding

ROW_KEYS = ("inputs", "targets", "weights")  # what a scoring batch carries to the device
PACKED_KEYS = (*ROW_KEYS, "positions", "segment_ids")  # ... of packed rows (eval.pack_texts)


@functools.partial(jax.jit, static_argnames=("config", "stacked"))
def class_sums(params, batch, config, stacked):
    """[rows, K] (`score.class_sums`)."""
    return score.class_sums(params, batch, config, stacked=stacked)


@functools.partial(jax.jit, static_argnames=("config", "stacked", "segments"))
def class_segment_sums(params, batch, config, stacked, segments):
    """[rows, segments, K] (`score.class_segment_sums`)."""
    return score.class_segment_sums(params, batch, config, stacked=stacked, segments=segments)


@functools.partial(jax.jit, static_argnames=("config", "stacked"))
def class_token_values(params, batch, config, stacked):
    """[rows, T, K] (`score.class_token_values`)."""
    return score.class_token_values(params, batch, config, stacked=stacked)


@functools.partial(jax.jit, static_argnames=("config", "pool"))
def head_log_posteriors(params, batch, config, pool):
    """[rows, K] (`score.head_log_posteriors`)."""
    return score.head_log_posteriors(params, batch, config, pool=pool)


def run_rows(params, rows: Rows, fn: Callable[[Any, dict], jax.Array], **kw) -> list[np.ndarray]:
    """Per row r (in the rows' order), float64 `fn(params, batch)[j]` for the batch row j that
    holds it: [K] for sums, [len(row r), K] (trimmed to the row) for per-token values."""
    return run_passes(params, [lambda: rows], fn, **kw)[0][1]


def run_passes(
    params,
    passes: Sequence[Callable[[], Rows]],
    fn: Callable[[Any, dict], jax.Array],
    *,
    batch_size: int,
    bucket_lengths,
    max_len: int,
    prefetch: int = 2,
    desc: str = "scoring",
    progress: bool = True,
    pack_texts: int = 0,
) -> list[tuple[Rows, list[np.ndarray]]]:
    """(rows, `run_rows`'s per-row results) of each pass (a thunk that builds its rows), all
    passes in one stream of batches: the rows and batches are built in the prefetching thread
    while the device scores the batches before them, so neither the next pass's rows nor any
    batch's padding keeps the device waiting, and the device is not drained between passes.
    `pack_texts` > 0: packed batches (`scoring_batches`), `fn` returning [rows, pack_texts, K]
    per-segment results (`class_segment_sums`)."""
    # rows over the 'data' axis of the params' own mesh (class-sharded params: each class group
    # scores every row with its models), else over every device of every process
    mesh = sharding.mesh_of(params) or sharding.make_mesh()
    sizes = (batch_size, bucket_lengths, max_len, mesh.shape["data"])
    bar = tqdm(total=0, desc=desc, leave=False, disable=not progress)
    built: list[Rows] = []  # each pass's rows and results, appended by the producer before
    out: list[list] = []  # its first batch

    keys = PACKED_KEYS if pack_texts else ROW_KEYS

    planned: list[int] = []  # calls of each pass planned so far

    def produce():
        lengths = plan = None
        for p, make in enumerate(passes):
            built.append(make())
            out.append([None] * len(built[p].inputs))
            # label prefixes of one length give every pass the rows' lengths of the first: its
            # plan again, not a new first-fit while the device waits at the pass change
            now = row_lengths(built[p])
            if lengths is None or not np.array_equal(lengths, now):
                lengths, plan = now, scoring_calls(now, *sizes, pack_texts=pack_texts)
            planned.append(len(plan))
            # the passes not built yet count as the mean planned one (a label prefix's passes
            # differ by a few tokens), so the bar's ETA holds from the first pass on
            bar.total = sum(planned) + round(np.mean(planned) * (len(passes) - len(planned)))
            for idx, b in scoring_batches(built[p], *sizes, pack_texts=pack_texts, plan=plan):
                yield p, idx, {k: b[k] for k in keys}

    def put(item):
        p, idx, b = item
        return p, idx, sharding.shard_batch(b, mesh)

    pending: collections.deque = collections.deque()  # (pass, row indices, result) in flight

    def collect() -> None:
        p, idx, result = pending.popleft()
        result = np.asarray(sharding.to_host(result), np.float64)  # every process gets all
        rows, got = built[p], out[p]
        if pack_texts:  # idx [rows, pack_texts]: the row in each segment of each batch row
            for j, s in zip(*np.nonzero(idx >= 0)):
                got[idx[j, s]] = result[j, s]
            return
        for j, r in enumerate(idx):
            if r >= 0:
                got[r] = result[j, : len(rows.inputs[r])] if result.ndim == 3 else result[j]

    device_batches = prefetch_to_device(produce(), prefetch, put)
    try:
        for p, idx, b in device_batches:
            result = fn(params, b)
            if result.is_fully_addressable:
                result.copy_to_host_async()  # the fetch below finds it on the host
            pending.append((p, idx, result))
            if len(pending) > max(prefetch, 1):
                # fetch results a few batches late: the device never waits for the host
                collect()
            bar.update()
    finally:  # also on an exception (Ctrl-C): the prefetching thread stops now, not at exit
        device_batches.close()
        bar.close()
    while pending:
        collect()
    return list(zip(built, out))


def text_sums(rows: Rows, per_row: list[np.ndarray], n_texts: int, k: int) -> np.ndarray:
    """[n_texts, k]: each text's rows added up (a long text's windows)."""
    totals = np.zeros((n_texts, k), np.float64)
    if per_row:
        np.add.at(totals, rows.text_index, np.stack(per_row))
    return totals


def text_token_values(
    rows: Rows, per_row: list[np.ndarray], n_texts: int, k: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(values, targets) per text: the values [n_i, K] and target token ids [n_i] of the text's
    weighted positions, in text order (its rows in order, each row left to right). `make_rows`
    scores every kept token of a text exactly once, so these are the text's scored tokens, EOS
    included; label-prefix and window-overlap tokens (weight 0) are dropped."""
    values: list[list[np.ndarray]] = [[] for _ in range(n_texts)]
    targets: list[list[np.ndarray]] = [[] for _ in range(n_texts)]
    for r, i in enumerate(rows.text_index):
        keep = rows.weights[r] != 0
        values[i].append(per_row[r][keep])
        targets[i].append(np.asarray(rows.targets[r])[keep])
    return (
        [np.concatenate(v) if v else np.zeros((0, k)) for v in values],
        [np.concatenate(t).astype(np.int64) if t else np.zeros(0, np.int64) for t in targets],
    )


def scoring_function(conditioning, config, model_config, per_token: bool = False):
    """(the jitted scorer, its static arguments) `score_dataset` runs for `conditioning`."""
    if not conditioning.generative:  # a classification head: one row per text, K posteriors
        if per_token:
            raise ValueError(f"a {conditioning.name} model has no per-token likelihoods")
        return head_log_posteriors, dict(config=model_config, pool=config.model.pool)
    if per_token:
        return class_token_values, dict(config=model_config, stacked=conditioning.stacked)
    if config.eval.pack_texts:
        static = dict(segments=int(config.eval.pack_texts))
        return class_segment_sums, dict(config=model_config, stacked=conditioning.stacked, **static)
    return class_sums, dict(config=model_config, stacked=conditioning.stacked)


def scoring_buckets(config) -> tuple[int, ...]:
    """The scoring shapes: eval.bucket_lengths, else the training shapes (data.bucket_lengths).
    Rows are right-padded under a causal mask, so a row scores the same in any shape (up to
    float32 rounding): finer scoring shapes cut padding without retraining."""
    return tuple(config.eval.bucket_lengths or config.data.bucket_lengths)


def class_passes(conditioning, k: int) -> list[int | None]:
    """Stacked class models (or a head) read the same rows at once: one pass; one label-prefix
    model takes a pass per class, each with that class's prefix."""
    stacked = conditioning.stacked or not conditioning.generative
    return [None] if stacked else list(range(k))


def score_dataset(
    params,
    conditioning,
    ds: Dataset,
    tokenizer,
    config,
    model_config,
    *,
    per_token: bool = False,
    desc: str = "scoring",
):
    """A tokenized data set scored the way eval scores it (`eval.long_text`, else
    `data.long_text`: windows or not; label prefixes, EOS) against every class of `conditioning`:
    ([N, K] log p(text | class) (a discriminative run: log posteriors), [N] scored tokens per
    text), or with `per_token`, per text ([n_i, K] float64 log p(token | its context, class),
    [n_i] those token ids), which add up to the sums up to float32 rounding (explanations)."""
    k, n = ds.num_classes, len(ds)
    kw = dict(
        batch_size=config.eval.batch_size,
        bucket_lengths=scoring_buckets(config),
        max_len=config.data.max_len,
        prefetch=config.data.prefetch,
        progress=bool(config.progress_bars),
    )
    jitted, static = scoring_function(conditioning, config, model_config, per_token)
    fn = functools.partial(jitted, **static)
    kw["pack_texts"] = static.get("segments", 0)
    if not conditioning.generative:  # a classification head: one row per text, K posteriors
        rows = conditioning.class_rows(config, ds, tokenizer, None)
        per_row = run_rows(params, rows, fn, desc=desc, **kw)
        return text_sums(rows, per_row, n, k), scored_tokens(rows, n)
    passes = class_passes(conditioning, k)
    makers = [functools.partial(conditioning.class_rows, config, ds, tokenizer, c) for c in passes]
    cols, counts, targets = [], [], None
    width = k if passes == [None] else 1
    for rows, per_row in run_passes(params, makers, fn, desc=desc, **kw):
        counts.append(scored_tokens(rows, n))
        if per_token:
            values, t = text_token_values(rows, per_row, n, width)
            if targets is not None and any(not np.array_equal(a, b) for a, b in zip(t, targets)):
                raise RuntimeError("label prefixes: the classes scored different text tokens")
            cols.append(values)
            targets = t
        else:
            cols.append(text_sums(rows, per_row, n, width))
    if any(not np.array_equal(c, counts[0]) for c in counts):
        raise RuntimeError("label prefixes: the classes scored different numbers of text tokens")
    if per_token:
        return [np.concatenate(v, axis=1) for v in zip(*cols)], targets
    return np.concatenate(cols, axis=1), counts[0]
