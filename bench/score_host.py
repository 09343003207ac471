"""The host's share of test scoring and the padding of each choice of scoring shapes
(`bench_score.py --host-table`).

Host table: every host step of `scoring.batched.score_dataset`, timed alone on the real rows
with a scorer that costs nothing on the device (the sum of the weights), so what is left is
the host: rows (`conditioning.class_rows`, per class pass), batches (`scoring_batches`:
sorting, bucketing, numpy padding), device_put, dispatch, fetch (one sync per batch, float64),
the per-row scatter, per-text sums and token counts. Then the whole loop (`run_passes`, where
rows and batches are built in the prefetching thread) with the same free scorer: its wall is
what the host adds when the device is infinitely fast.

Padding table: real row tokens / token slots of every scoring call, computed from the row
lengths exactly as `scoring_batches` batches them (the token budget: eval.batch_size rows at
max_len, more in shorter buckets; the last batch of a bucket filled with empty rows), for the
config's shapes and finer ladders, and for packed scoring rows (`eval.pack_texts`,
`data.batching.packed_scoring_plan`): calls and token slots, which set the device time at a
fixed cost per token slot.
"""

from __future__ import annotations

import collections
import time
from typing import Any

import numpy as np

NINE = (128, 192, 256, 320, 384, 512, 640, 768, 1024)  # data.bucket_lengths' default


def free_scorer(width: int):
    """A jitted scorer of the real [rows, width] output shape that costs nothing on the device."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def fn(params, batch):
        return jnp.repeat(jnp.sum(batch["weights"], -1, keepdims=True), width, -1)

    return fn


def host_table(config: Any, cond_name: str, ds: Any, tok: Any) -> dict[str, float]:
    """Seconds per host step of scoring `ds` under conditioning `cond_name` (module doc)."""
    import jax

    from gencls_jax import conditioning
    from gencls_jax.data.rows import scored_tokens
    from gencls_jax.scoring import batched as B
    from gencls_jax.system import sharding

    cond = conditioning.get(cond_name)
    k, n = ds.num_classes, len(ds)
    passes = B.class_passes(cond, k)
    fn = free_scorer(k if passes == [None] else 1)
    mesh = sharding.make_mesh()
    sizes = (config.eval.batch_size, B.scoring_buckets(config), config.data.max_len, 1)
    t: dict[str, float] = collections.defaultdict(float)

    def clock(name, f, *a):
        t0 = time.perf_counter()
        out = f(*a)
        t[name] += time.perf_counter() - t0
        return out

    calls = 0
    for c in passes:
        rows = clock("rows (class_rows)", cond.class_rows, config, ds, tok, c)
        batches = clock(
            "batches (sort, bucket, pad)", lambda: list(B.scoring_batches(rows, *sizes))
        )
        calls += len(batches)
        dev = clock(
            "device_put",
            lambda: jax.block_until_ready(
                [sharding.shard_batch({x: b[x] for x in B.ROW_KEYS}, mesh) for _, b in batches]
            ),
        )
        jax.block_until_ready([fn(None, d) for d in {d["inputs"].shape: d for d in dev}.values()])
        res = clock("dispatch", lambda: [fn(None, d) for d in dev])
        jax.block_until_ready(res)
        host = clock(
            "fetch (to host, float64)",
            lambda: [np.asarray(sharding.to_host(r), np.float64) for r in res],
        )
        per_row: list = [None] * len(rows.inputs)

        def scatter():
            for (idx, _), r in zip(batches, host):
                for j, i in enumerate(idx):
                    if i >= 0:
                        per_row[i] = r[j]

        clock("per-row scatter", scatter)
        clock("text sums", B.text_sums, rows, per_row, n, 1 if c is not None else k)
        clock("scored tokens", scored_tokens, rows, n)
    t["sum of the steps"] = sum(t.values())
    makers = [lambda c=c: cond.class_rows(config, ds, tok, c) for c in passes]
    kw = dict(batch_size=sizes[0], bucket_lengths=sizes[1], max_len=sizes[2])
    t0 = time.perf_counter()
    B.run_passes(None, makers, fn, prefetch=config.data.prefetch, progress=False, **kw)
    t["run_passes, free scorer (the loop)"] = time.perf_counter() - t0
    t["calls"] = calls
    return dict(t)


def slots(lengths: np.ndarray, buckets, batch_size: int, max_len: int) -> tuple[int, int]:
    """(calls, token slots) of `scoring_batches` over rows of these lengths."""
    from gencls_jax.data.batching import scoring_plan

    plan = scoring_plan(lengths, batch_size, buckets, max_len)
    return len(plan), sum(n * T for T, _, n in plan)


def packed_slots(
    lengths: np.ndarray, buckets, batch_size: int, max_len: int, pack_texts: int
) -> tuple[int, int]:
    """(calls, token slots) of packed scoring (`eval.pack_texts`, `packed_scoring_plan`)."""
    from gencls_jax.data.batching import packed_scoring_plan

    plan = packed_scoring_plan(lengths, batch_size, buckets, max_len, pack_texts)
    return len(plan), sum(n * T for T, _, n in plan)


def padding_table(config: Any, cond_name: str, ds: Any, tok: Any) -> list[dict]:
    """Per choice of scoring shapes: calls, real tokens, token slots, padding, slots against
    the config's shapes; rows of class pass 0 (all passes alike), times the passes."""
    from gencls_jax import conditioning
    from gencls_jax.data.rows import row_lengths
    from gencls_jax.scoring import batched as B

    cond = conditioning.get(cond_name)
    passes = len(B.class_passes(cond, ds.num_classes))
    lengths = row_lengths(cond.class_rows(config, ds, tok, 0 if passes > 1 else None))
    bs, L = config.eval.batch_size, config.data.max_len
    buckets = B.scoring_buckets(config)
    ladders = {
        f"config {buckets}": buckets,
        "nine (data.bucket_lengths default)": NINE,
        "every 64 (16 shapes)": tuple(range(64, L + 1, 64)),
        "every 32 (32 shapes)": tuple(range(32, L + 1, 32)),
    }
    out = [dict(shapes=k, calls_slots=slots(lengths, v, bs, L)) for k, v in ladders.items()]
    pack = int(config.eval.pack_texts) or int(config.data.pack_texts)  # the LM's bound if off
    out.append(
        dict(
            shapes=f"packed (eval.pack_texts={pack})",
            calls_slots=packed_slots(lengths, buckets, bs, L, pack),
        )
    )
    real, base = int(lengths.sum()), out[0]["calls_slots"][1]
    for r in out:
        calls, total = r.pop("calls_slots")
        r.update(
            calls=calls * passes,
            real_tokens=real * passes,
            slots=total * passes,
            padding=1 - real / total,
            slots_vs_config=total / base,
        )
    return out


def print_tables(config: Any, cond_name: str, ds: Any, tok: Any) -> dict:
    """Both tables, printed; returned for the JSON."""
    host = host_table(config, cond_name, ds, tok)
    print(f"\nhost steps of scoring, {cond_name}, {len(ds)} texts x {ds.num_classes} classes:")
    for name, s in host.items():
        print(f"  {name:40s} {s:8.3f}" if name != "calls" else f"  {name:40s} {int(s):8d}")
    pad = padding_table(config, cond_name, ds, tok)
    print(f"\npadding of the scoring calls, {cond_name} (every class pass):")
    print(f"  {'shapes':42s} {'calls':>6s} {'real tok':>10s} {'slots':>10s} {'padding':>8s} "
          f"{'slots/config':>12s}")  # fmt: skip
    for r in pad:
        print(
            f"  {r['shapes']:42s} {r['calls']:6d} {r['real_tokens']:10d} {r['slots']:10d} "
            f"{r['padding']:8.3f} {r['slots_vs_config']:12.3f}"
        )
    return dict(host=host, padding=pad)
