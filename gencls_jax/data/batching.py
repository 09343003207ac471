"""Rows -> fixed-shape batches: the contract with the training engine and the scorer.

A training batch is a dict of numpy arrays, each [B, T]:
  inputs int32, targets int32 (0 at padding), weights float32 (0 at padding and prefix tokens),
  positions int32 (restart at 0 per text), segment_ids int32 (0 = padding, 1..n = n-th text of the
  row).
Schemes: 'pad' (every row padded to max_len), 'bucket' (each row padded to the smallest
bucket length that fits; a batch holds one bucket), 'pack' (first-fit packing of shuffled rows
into rows of max_len). A last, partial batch is filled with all-padding rows (weight 0).
The decision objective's sliced batches (`SlicedStream`) add `labels` [B] and, packed, each
token's text slot `text_ids`.

Determinism: an epoch's plan (which rows go in which batch) is a pure function of
(lengths, spec, seed, epoch), so batches(epoch, start=S) is exactly what an uninterrupted
epoch yields from batch S on.

Per-class (K models trained at once): class k has its own plan of n_k batches, and every class
sees each of its rows exactly once per epoch, as if its model were fine-tuned alone. An epoch
has max_k n_k steps: class k's n_k batches come first, then all-padding batches (weight 0),
on which the trainer leaves class k's model untouched (no update, no schedule step). No class
is cycled, so a validation loss over one epoch counts every validation text once. Each step
stacks the K batches [K, B, T], T = the largest of the K batches' lengths at that step.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator, Sequence

import numpy as np

from gencls_jax.data.rows import Rows, row_lengths
from gencls_jax.errors import DataError

SCHEMES = ("pad", "bucket", "pack")

BatchPlan = tuple[int, list[list[int]]]  # (T, rows; each row = the row indices packed in it)
EMPTY_PLAN: BatchPlan = (0, [])  # a class past its own batches: all padding, at the step's length


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    scheme: str
    batch_size: int
    max_len: int
    bucket_lengths: tuple[int, ...]
    pack_texts: int = 0  # 'pack' (the LM's rows): texts per row at most, 0 = as many as fit

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise DataError(f"data.batching must be one of {SCHEMES}, got {self.scheme!r}")
        if self.batch_size <= 0:
            raise DataError(f"batch size must be > 0, got {self.batch_size}")
        if self.pack_texts < 0:
            raise DataError(f"data.pack_texts must be >= 0 (0 = no bound), got {self.pack_texts}")

    @property
    def buckets(self) -> np.ndarray:
        """Bucket lengths up to max_len, always ending with max_len (so every row fits one)."""
        return bucket_ladder(self.bucket_lengths, self.max_len)


def bucket_ladder(bucket_lengths: Sequence[int], max_len: int) -> np.ndarray:
    b = sorted({int(x) for x in bucket_lengths if 0 < int(x) < max_len} | {int(max_len)})
    return np.asarray(b, np.int64)


def bucket_of(lengths: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """Index of the smallest bucket >= each length."""
    if lengths.size and lengths.max() > buckets[-1]:
        raise DataError(
            f"a row of {lengths.max()} tokens is longer than the largest bucket {buckets[-1]}"
        )
    return np.searchsorted(buckets, lengths, side="left")


def packed_length(lengths: np.ndarray, buckets: np.ndarray) -> int:
    """The one row length of packed rows: the smallest bucket that holds the longest text."""
    return int(buckets[bucket_of(np.asarray([lengths.max(initial=1)]), buckets)[0]])


def first_fit(
    lengths: np.ndarray, order: np.ndarray, capacity: int, max_items: int = 0
) -> list[list[int]]:
    """Pack items (in `order`) into bins of `capacity`: each goes to the first open bin it fits.
    `max_items` > 0: a bin holding that many is closed (a static bound on texts per row).

    An order of long runs of one length (a scoring plan's, longest first: IMDB's 25,000 test
    rows are ~900 runs) is placed a run at a time (`_first_fit_runs`): an item at a time, the
    plan kept the device waiting ~0.25 s for the first scoring call. A shuffled order (an LM
    epoch's) has no runs to speak of: one item at a time."""
    order = np.asarray(order, np.int64)
    ls = np.asarray(lengths, np.int64)[order]
    runs = np.flatnonzero(np.diff(ls, prepend=-1, append=-1))  # where each run starts, + end
    if len(runs) - 1 > len(order) // 4 or (ls.size and ls.min() <= 0):
        return _first_fit_items(ls, order, capacity, max_items)
    return _first_fit_runs(ls, order, runs, capacity, max_items)


def _first_fit_items(ls, order, capacity: int, max_items: int) -> list[list[int]]:
    room = np.empty(len(order), np.int64)  # of the open bins; -1: closed (max_items)
    bins: list[list[int]] = []
    for i, n in zip(order.tolist(), ls.tolist()):
        fits = np.flatnonzero(room[: len(bins)] >= n)
        if fits.size:
            j = fits[0]
            bins[j].append(i)
            room[j] -= n
        else:
            j = len(bins)
            room[j] = capacity - n
            bins.append([i])
        if max_items and len(bins[j]) >= max_items:
            room[j] = -1
    return bins


def _first_fit_runs(ls, order, runs, capacity: int, max_items: int) -> list[list[int]]:
    """First fit places a run of k items of one length n in the open bins from the left, each
    taking as many as its room (and `max_items`) allows, then in new bins of capacity // n."""
    room = np.empty(len(order), np.int64)  # of the open bins; -1: closed (max_items)
    held = np.zeros(len(order), np.int64)  # items in each bin
    cap = max_items or len(order) + 1
    bins: list[list[int]] = []
    for a, b in zip(runs[:-1].tolist(), runs[1:].tolist()):
        n, nb = int(ls[a]), len(bins)
        take = np.minimum(np.maximum(room[:nb], 0) // n, cap - held[:nb])
        upto = np.cumsum(take)  # the run's items bins 0..j take, in order
        starts, ends = np.minimum(upto - take, b - a), np.minimum(upto, b - a)
        for j in np.flatnonzero(ends > starts).tolist():
            bins[j].extend(order[a + starts[j] : a + ends[j]].tolist())
            room[j] -= n * (ends[j] - starts[j])
            held[j] += ends[j] - starts[j]
        per = max(min(capacity // n, cap), 1)  # a new bin's share (one item if n > capacity)
        for s in range(a + (int(ends[-1]) if nb else 0), b, per):
            j = len(bins)
            bins.append(order[s : min(s + per, b)].tolist())
            held[j] = len(bins[j])
            room[j] = capacity - n * held[j]
        room[: len(bins)][held[: len(bins)] >= cap] = -1
    return bins


def epoch_plan(lengths: np.ndarray, spec: BatchSpec, key: Sequence[int]) -> list[BatchPlan]:
    """Which rows form which batch, for one pass over all rows;
    seeded by `key` (seed, epoch, ...)."""
    rng = np.random.default_rng([int(k) for k in key])
    order = rng.permutation(len(lengths))
    B = spec.batch_size
    if spec.scheme == "pad":
        return [
            (spec.max_len, [[int(i)] for i in order[s : s + B]]) for s in range(0, len(order), B)
        ]
    if spec.scheme == "bucket":
        buckets = spec.buckets
        which = bucket_of(lengths, buckets)
        plan = []
        for b, T in enumerate(buckets):
            members = order[which[order] == b]
            plan += [
                (int(T), [[int(i)] for i in members[s : s + B]]) for s in range(0, len(members), B)
            ]
        return [plan[i] for i in rng.permutation(len(plan))]
    bins = first_fit(lengths, order, spec.max_len, spec.pack_texts)
    bins = [bins[i] for i in rng.permutation(len(bins))]
    return [(spec.max_len, bins[s : s + B]) for s in range(0, len(bins), B)]


PLANS_KEPT = 2  # epoch plans a stream keeps: the epoch being read and the one asked about next


class PlansOnce:
    """`plan(epoch)` and `num_batches(epoch)` of a stream from its `_plan(epoch)` (a pure function
    of the epoch), computed once per epoch while it is among the PLANS_KEPT most recent; every
    epoch's count is kept. Why: the training loop asks for each epoch's plan for the run's
    length, for its schedules and for its batches (~9 plans in a 2-epoch run), and a first-fit
    packing of a corpus is ~0.4 s a plan (73,750 texts into 1,024-token rows). The memo lives in
    the instance's `__dict__` (as `functools.cached_property` keeps its values on frozen
    dataclasses): no field, so equality, repr and `dataclasses.replace` ignore it. No lock: the
    prefetching thread and the loop may both plan an epoch once at worst (the same plan), and
    every step here is one atomic dict operation."""

    def _plan(self, epoch: int) -> list[BatchPlan]:
        raise NotImplementedError

    def _memo(self) -> dict:
        return self.__dict__.setdefault("_plans_memo", {"plans": {}, "counts": {}})

    def plan(self, epoch: int) -> list[BatchPlan]:
        memo = self._memo()
        plans = memo["plans"]
        plan = plans.get(epoch)
        if plan is None:
            plan = plans[epoch] = self._plan(epoch)
            memo["counts"][epoch] = len(plan)
            for old in [e for e in list(plans) if e != epoch][: max(len(plans) - PLANS_KEPT, 0)]:
                plans.pop(old, None)
        return plan

    def num_batches(self, epoch: int = 0) -> int:
        n = self._memo()["counts"].get(epoch)
        return len(self.plan(epoch)) if n is None else n


def make_batch(
    rows: Rows, plan: BatchPlan, batch_size: int, length: int | None = None
) -> dict[str, np.ndarray]:
    """Materialise one planned batch as the [B, T] dict of the training contract."""
    T = length or plan[0]
    out = {
        "inputs": np.zeros((batch_size, T), np.int32),
        "targets": np.zeros((batch_size, T), np.int32),
        "weights": np.zeros((batch_size, T), np.float32),
        "positions": np.zeros((batch_size, T), np.int32),
        "segment_ids": np.zeros((batch_size, T), np.int32),
    }
    for b, members in enumerate(plan[1]):
        off = 0
        for s, r in enumerate(members, start=1):
            n = len(rows.inputs[r])
            sl = slice(off, off + n)
            out["inputs"][b, sl] = rows.inputs[r]
            out["targets"][b, sl] = rows.targets[r]
            out["weights"][b, sl] = rows.weights[r]
            out["positions"][b, sl] = np.arange(n)
            out["segment_ids"][b, sl] = s
            off += n
    return out


@dataclasses.dataclass(frozen=True)
class TrainStream(PlansOnce):
    """One model's training rows: batches of an epoch are a pure function of (seed, epoch)."""

    rows: Rows
    spec: BatchSpec
    seed: int
    stream: int = 0  # distinguishes independent streams with one seed (e.g. class k)

    def _plan(self, epoch: int) -> list[BatchPlan]:
        return epoch_plan(row_lengths(self.rows), self.spec, (self.seed, epoch, self.stream))

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """The batches of `epoch` from index `start` on (resume after batch start-1)."""
        for p in self.plan(epoch)[start:]:
            yield make_batch(self.rows, p, self.spec.batch_size)


@dataclasses.dataclass(frozen=True)
class PerClassStream:
    """K class streams stepped together: batches [K, B, T]; see the module docstring for the
    epoch."""

    classes: tuple[TrainStream, ...]

    def plans(self, epoch: int) -> list[list[BatchPlan]]:
        """plans[k][step] for every class: class k's own epoch, then empty plans up to the epoch's
        steps."""
        own = [c.plan(epoch) for c in self.classes]
        steps = max(len(p) for p in own)
        return [p + [EMPTY_PLAN] * (steps - len(p)) for p in own]

    def num_batches(self, epoch: int = 0) -> int:
        """Steps of the epoch: the largest class's batches."""
        return max(self.steps_per_model(epoch))

    def steps_per_model(self, epoch: int = 0) -> tuple[int, ...]:
        """Real batches of each class in the epoch (the training loop's schedules run over
        them)."""
        return tuple(c.num_batches(epoch) for c in self.classes)

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        plans = self.plans(epoch)
        for step in range(start, len(plans[0])):
            T = max(p[step][0] for p in plans)
            per = [
                make_batch(c.rows, p[step], c.spec.batch_size, T)
                for c, p in zip(self.classes, plans)
            ]
            yield {k: np.stack([b[k] for b in per]) for k in per[0]}


@dataclasses.dataclass(frozen=True)
class SlicedStream(PlansOnce):
    """Mixed-class batches for objectives that train on the decision
    (`training/objectives.py`): each text is seen as S slices (slice k: the text as class k's
    model reads it, e.g. with class k's label prefix; one slice for a discriminative head).
    Batches are [S, rows, T] arrays plus `labels` [B] (B = the batch size in texts, -1 for
    empty slots); all slices share one plan, whose lengths are each text's longest row over
    the slices. One pass over all texts per epoch, every model steps every step.

    'pad' / 'bucket': one text per row, text b in row b of every slice (rows = B).
    'pack' (`decision_pack_plan`): up to B texts of a step packed first-fit into R rows
    (`pack_rows`; 0 = `auto_pack_rows`) of one length T for the whole run (the smallest bucket
    that holds the longest text), with `text_ids` [S, R, T] int32: the slot (0..B-1) of the
    text each token belongs to, -1 at padding. Slots number the texts in the order they sit in
    the rows, row by row; `labels[slot]` is that text's class. Each slice packs the texts at
    its own offsets (label prefixes may differ in length between slices), so `text_ids` is
    per slice; its segment ids and positions are `make_batch`'s."""

    slices: tuple[Rows, ...]
    labels: np.ndarray  # [N] class of each text (row i of every slice is text i)
    spec: BatchSpec
    seed: int
    pack_rows: int = 0  # 'pack': rows per step (data.pack_rows); 0 = auto_pack_rows

    def __post_init__(self):
        if any(len(r.inputs) != len(self.labels) for r in self.slices):
            raise DataError(
                "a decision-trained objective needs one row per text: set "
                "data.long_text to 'truncate' or 'error' (not 'window'); its scoring may read "
                "windows (eval.long_text='window')"
            )
        if self.pack_rows < 0:
            raise DataError(f"data.pack_rows must be >= 0 (0 = auto), got {self.pack_rows}")

    @property
    def packed(self) -> bool:
        return self.spec.scheme == "pack"

    def lengths(self) -> np.ndarray:
        """[N] each text's longest row over the slices: the room it takes in a row."""
        return np.max([row_lengths(r) for r in self.slices], axis=0)

    def pack_shape(self) -> tuple[int, int]:
        """'pack': (R rows, T tokens) of every step of the run."""
        lengths = self.lengths()
        T = packed_length(lengths, self.spec.buckets)
        R = self.pack_rows or auto_pack_rows(lengths, self.spec.batch_size, T)
        return R, T

    def _plan(self, epoch: int) -> list[BatchPlan]:
        lengths = self.lengths()
        if not self.packed:
            return epoch_plan(lengths, self.spec, (self.seed, epoch))
        R, T = self.pack_shape()
        return decision_pack_plan(lengths, self.spec.batch_size, R, T, (self.seed, epoch))

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        rows = self.pack_shape()[0] if self.packed else self.spec.batch_size
        for T, members in self.plan(epoch)[start:]:
            yield self._batch(T, members, rows)

    def _batch(self, T: int, members: list[list[int]], rows: int) -> dict[str, np.ndarray]:
        B = self.spec.batch_size
        per = [make_batch(r, (T, members), rows) for r in self.slices]
        batch = {k: np.stack([b[k] for b in per]) for k in per[0]}
        order = [i for m in members for i in m]  # the texts in the order of their rows
        labels = np.full(B, -1, np.int32)
        labels[: len(order)] = self.labels[order]
        if not self.packed:
            return {**batch, "labels": labels}
        # text_ids[s, r, t] = slot of segment segment_ids[s, r, t] of row r (-1: padding)
        lookup = np.full((rows, 1 + max((len(m) for m in members), default=0)), -1, np.int32)
        slot = 0
        for r, m in enumerate(members):
            lookup[r, 1 : 1 + len(m)] = np.arange(slot, slot + len(m))
            slot += len(m)
        text_ids = lookup[np.arange(rows)[None, :, None], batch["segment_ids"]]
        return {**batch, "labels": labels, "text_ids": text_ids}


PACK_FILL = 0.85  # auto_pack_rows' expected fill of a packed decision step's rows


def auto_pack_rows(lengths: np.ndarray, batch_size: int, length: int) -> int:
    """Rows of `length` tokens a step of `batch_size` texts of these lengths is given when
    data.pack_rows is 0: ceil(B x mean length / (0.85 x T)), in [1, B]."""
    mean = float(np.mean(lengths)) if len(lengths) else 0.0
    rows = int(np.ceil(batch_size * mean / (PACK_FILL * length)))
    return min(max(rows, 1), batch_size)


def decision_pack_plan(
    lengths: np.ndarray, batch_size: int, rows: int, length: int, key: Sequence[int]
) -> list[BatchPlan]:
    """The steps of one epoch of packed decision batches: the texts in `epoch_plan`'s shuffled
    order (rng of `key`), each placed first-fit into the current step's `rows` rows of
    `length` tokens; a step closes when it holds `batch_size` texts or the next text fits in
    none of its rows (that text opens the next step). Every text once; a pure function of
    its arguments (a resumed epoch's steps are the uninterrupted one's)."""
    if len(lengths) and lengths.max() > length:
        raise DataError(f"a text of {lengths.max()} tokens is longer than a row of {length}")
    rng = np.random.default_rng([int(k) for k in key])
    order = rng.permutation(len(lengths))
    plan: list[BatchPlan] = []
    bins: list[list[int]] = []
    room: list[int] = []
    count = 0
    for i in order:
        n = int(lengths[i])
        j = next((j for j, left in enumerate(room) if left >= n), None)
        if count == batch_size or (j is None and len(bins) == rows):
            plan.append((length, bins))
            bins, room, count, j = [], [], 0, None
        if j is None:
            bins.append([int(i)])
            room.append(length - n)
        else:
            bins[j].append(int(i))
            room[j] -= n
        count += 1
    if bins:
        plan.append((length, bins))
    return plan


def scoring_batches(
    rows: Rows,
    batch_size: int,
    bucket_lengths: Sequence[int],
    max_len: int,
    multiple: int = 1,
    pack_texts: int = 0,
    plan: list | None = None,
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(row indices, batch) for every row, sorted by length, in fixed shapes [rows, bucket]: the
    scorer compiles once per bucket. A batch holds `batch_size` rows at `max_len` and
    proportionally more in shorter buckets (batch_size * max_len // bucket), so every call
    carries about the same number of tokens: short rows in batches of a fixed row count would
    leave the accelerator waiting on kernel launches. One row per batch row, padded as training
    rows are (`make_batch`); filler rows have index -1 and weight 0, and score 0. A batch's row
    count is a multiple of `multiple` (the devices the rows are split over).
    `pack_texts` > 0: packed rows instead (`packed_scoring_plan`), indices [rows, pack_texts]:
    entry [j, s] is the row in segment s + 1 of batch row j. `plan`: `scoring_calls`' plan of
    these rows, when the caller has it already."""
    if plan is None:
        sizes = (batch_size, bucket_lengths, max_len, multiple)
        plan = scoring_calls(row_lengths(rows), *sizes, pack_texts=pack_texts)
    if pack_texts:
        for T, bins, n in plan:
            idx = np.full((n, pack_texts), -1, np.int64)
            for j, members in enumerate(bins):
                idx[j, : len(members)] = members
            yield idx, make_batch(rows, (T, bins), n)
        return
    for T, idx, n in plan:
        batch = make_batch(rows, (T, [[int(r)] for r in idx]), n)
        yield np.concatenate([idx, np.full(n - len(idx), -1, idx.dtype)]), batch


def scoring_calls(
    lengths: np.ndarray,
    batch_size: int,
    bucket_lengths: Sequence[int],
    max_len: int,
    multiple: int = 1,
    pack_texts: int = 0,
) -> list:
    """The calls `scoring_batches` makes of rows of these lengths: `packed_scoring_plan` with
    `pack_texts`, else `scoring_plan` (its length: the number of calls)."""
    if pack_texts:
        return packed_scoring_plan(
            lengths, batch_size, bucket_lengths, max_len, pack_texts, multiple
        )
    return scoring_plan(lengths, batch_size, bucket_lengths, max_len, multiple)


def packed_scoring_plan(
    lengths: np.ndarray,
    batch_size: int,
    bucket_lengths: Sequence[int],
    max_len: int,
    pack_texts: int,
    multiple: int = 1,
) -> list[tuple[int, list[list[int]], int]]:
    """(T, each batch row's rows, rows per batch) of packed scoring (`eval.pack_texts`): the
    rows, longest first, packed first-fit into rows of one length T (the smallest bucket that
    holds the longest row), at most `pack_texts` per row; each call carries the token slots of
    a right-padded call of that length. One shape, one program, and nearly no padding; the
    scorer sums each segment (`score.class_segment_sums`)."""
    if not len(lengths):
        return []
    T = packed_length(lengths, bucket_ladder(bucket_lengths, max_len))
    bins = first_fit(lengths, np.argsort(-lengths, kind="stable"), T, pack_texts)
    n = scoring_rows(batch_size, T, max_len, multiple)
    return [(T, bins[s : s + n], n) for s in range(0, len(bins), n)]


def scoring_plan(
    lengths: np.ndarray,
    batch_size: int,
    bucket_lengths: Sequence[int],
    max_len: int,
    multiple: int = 1,
) -> list[tuple[int, np.ndarray, int]]:
    """(T, row indices, rows per batch) of each batch `scoring_batches` makes of rows of these
    lengths, in its order: index arrays only, so the number of calls and their token slots are
    known before any batch is padded (a progress bar's total, bench/score_host.py's padding).

    A used bucket joins the next used one when their rows fit in no more calls of the longer
    shape than the two take apart (a small set's short bucket, less than a call, into the
    next): every call carries the same tokens, so this costs nothing and saves a program (a
    cold compile of gpt2's scoring is 5-10 s on the H200, a cached one ~0.9 s)."""
    buckets = bucket_ladder(bucket_lengths, max_len)
    order = np.argsort(lengths, kind="stable")
    which = bucket_of(lengths[order], buckets)
    groups = [(int(T), order[which == b]) for b, T in enumerate(buckets) if np.any(which == b)]

    def calls(T: int, m: int) -> int:
        return -(-m // scoring_rows(batch_size, T, max_len, multiple))

    i = 0
    while i + 1 < len(groups):
        (T, a), (T2, b) = groups[i], groups[i + 1]
        if calls(T2, len(a) + len(b)) <= calls(T, len(a)) + calls(T2, len(b)):
            groups[i : i + 2] = [(T2, np.concatenate([a, b]))]  # then the merged one's next
        else:
            i += 1
    plan = []
    for T, members in groups:
        n = scoring_rows(batch_size, T, max_len, multiple)
        plan += [(T, members[s : s + n], n) for s in range(0, len(members), n)]
    return plan


def scoring_rows(batch_size: int, length: int, max_len: int, multiple: int = 1) -> int:
    """Rows of a scoring batch of `length` tokens (`scoring_batches`)."""
    n = max(batch_size * int(max_len) // int(length), 1)
    return -(-n // multiple) * multiple  # rows split evenly over the devices


def padding_fraction(batches: Iterable[dict[str, np.ndarray]]) -> float:
    """1 - real token slots / all token slots (segment id 0 = padding), over batches."""
    real = total = 0
    for b in batches:
        real += int((b["segment_ids"] > 0).sum())
        total += b["segment_ids"].size
    return 1.0 - real / max(total, 1)
