"""Host input-pipeline benchmark: batches/s and padding fraction of pad / bucket / pack on IMDB.

    python bench/bench_input.py                      # real IMDB (local jsonl), CPU
    python bench/bench_input.py --batches 500 --max-len 1024 --batch-size 8

Tokenization goes through the pipeline's cache (first run: a few minutes on 2 CPU cores).
Padding fraction = 1 - real token slots / all token slots of one epoch's batches (a partial
last batch counts its filler rows as padding). Throughput is the host side only: planning an
epoch (seeded shuffle + bucketing/packing) and assembling numpy batches, no device transfer.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs.base import get_config  # noqa: E402
from gencls_jax import conditioning  # noqa: E402
from gencls_jax.data import batching, pipeline  # noqa: E402
from gencls_jax.data.rows import row_lengths  # noqa: E402
from gencls_jax.data.tokenize import load_tokenizer  # noqa: E402


def plan_padding(stream: batching.TrainStream, plan) -> float:
    real = row_lengths(stream.rows).sum()
    total = sum(stream.spec.batch_size * T for T, _ in plan)
    return 1.0 - real / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--source", default="jsonl", help="data.source (tfds falls back to the local jsonl offline)"
    )
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=400, help="batches timed per scheme")
    ap.add_argument("--eval-batch-size", type=int, default=32)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    c = get_config()
    c.data.source, c.data.max_len, c.train.batch_size = args.source, args.max_len, args.batch_size
    c.data.val_size = 0.0  # the whole train split
    d = c.data
    tok = (
        load_tokenizer(d.tokenizer_fallback)
        if Path(d.tokenizer_fallback).is_dir()
        else load_tokenizer(d.tokenizer)
    )
    t0 = time.perf_counter()
    ds = pipeline.load_datasets(c, ("train", "test"), tok)
    print(
        f"loaded + tokenized (cache) in {time.perf_counter() - t0:.1f}s: "
        + ", ".join(
            f"{k} {len(v)} texts, mean {v.tokens.lengths.mean():.0f} tokens" for k, v in ds.items()
        )
    )
    print(
        f"max_len {d.max_len}, batch size {args.batch_size}, long_text {d.long_text}, "
        f"append_eos {d.append_eos}, "
        f"buckets {tuple(batching.bucket_ladder(d.bucket_lengths, d.max_len).tolist())}\n"
    )
    print(
        f"{'split':6} {'scheme':7} {'batches':>8} {'padding':>8} {'plan s':>7} {'batches/s':>10} "
        f"{'per-class [K,B,T] b/s':>22}"
    )
    for split in ("train", "test"):
        data = ds[split]
        rows = pipeline.rows(c, data, tok)
        for scheme in batching.SCHEMES:
            d.batching = scheme
            stream = batching.TrainStream(rows, pipeline.batch_spec(c), c.seed)
            t = time.perf_counter()
            plan = stream.plan(0)
            plan_s = time.perf_counter() - t
            n = min(args.batches, len(plan))
            t = time.perf_counter()
            for p in plan[:n]:
                batching.make_batch(rows, p, args.batch_size)
            bps = n / (time.perf_counter() - t)
            pc_bps = float("nan")
            if split == "train":
                c.model.conditioning = "per_class"
                pc = conditioning.get("per_class").train_stream(c, data, tok)
                m = min(n, pc.num_batches(0) - 1)
                it = pc.batches(0)
                next(it)  # planning excluded, as above
                t = time.perf_counter()
                for _ in range(m):
                    next(it)
                pc_bps = m / (time.perf_counter() - t)
            print(
                f"{split:6} {scheme:7} {len(plan):8d} {plan_padding(stream, plan):8.3f} "
                f"{plan_s:7.2f} {bps:10.0f} {pc_bps:22.0f}"
            )
        shapes = {}
        sb = list(batching.scoring_batches(rows, args.eval_batch_size, d.bucket_lengths, d.max_len))
        for _, b in sb:
            shapes[b["inputs"].shape] = shapes.get(b["inputs"].shape, 0) + 1
        print(
            f"{split:6} {'score':7} {len(sb):8d} "
            f"{batching.padding_fraction(b for _, b in sb):8.3f}   (scoring batches of "
            f"{args.eval_batch_size} rows at max_len, shapes {dict(sorted(shapes.items()))})"
        )


if __name__ == "__main__":
    main()
