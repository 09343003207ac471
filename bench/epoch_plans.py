"""What the training loop's questions about epoch plans cost on the host before and between
epochs: a stream that plans each epoch once (`TrainStream`'s memo) against one that plans
afresh for every question (as before 2026-11-30's eighth session), at IMDB pretraining's size.

    python bench/epoch_plans.py                      # 73,750 texts, rows of 1,024, 2 epochs
    python bench/epoch_plans.py --epochs 4 --texts 25000

Text lengths are drawn log-normal with IMDB's tokenized median (227) and mean (305), cut to
[8, max_len]. The questions are `loop.train`'s: the run's length (`run_epochs`), every epoch's
updates (`total_steps`), the log line's first-epoch count, then per epoch its count and its
batches' plan.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=73750)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32, help="rows per step")
    ap.add_argument("--pack-texts", type=int, default=0, help="data.pack_texts (0 = as fit)")
    args = ap.parse_args()

    import ml_collections

    from gencls_jax.data import batching as B
    from gencls_jax.data.rows import Rows
    from gencls_jax.training import loop

    rng = np.random.default_rng(0)
    lengths = rng.lognormal(np.log(227), np.sqrt(2 * np.log(305 / 227)), args.texts)
    lengths = np.clip(lengths.astype(np.int64), 8, args.max_len)
    rows = Rows(
        *([[np.zeros(n, np.int32) for n in lengths]] * 3), text_index=np.arange(len(lengths))
    )
    spec = B.BatchSpec("pack", args.batch, args.max_len, (), args.pack_texts)
    tc = ml_collections.ConfigDict(dict(epochs=args.epochs, min_steps=0, max_steps=0))

    class Afresh(B.TrainStream):
        def plan(self, epoch):
            return self._plan(epoch)

        def num_batches(self, epoch=0):
            return len(self._plan(epoch))

    def questions(stream) -> tuple[float, int]:
        n = [0]
        inner = stream._plan

        def counted(epoch):
            n[0] += 1
            return inner(epoch)

        object.__setattr__(stream, "_plan", counted)
        t0 = time.perf_counter()
        stream.num_batches(0)  # train.py's log line
        loop.run_epochs(tc, stream.num_batches)
        loop.total_steps(tc, stream.num_batches)
        for e in range(args.epochs):
            stream.num_batches(e)
            stream.plan(e)
        return time.perf_counter() - t0, n[0]

    print(
        f"{args.texts} texts (mean {lengths.mean():.0f} tokens), rows of {args.max_len}, "
        f"{args.batch} rows per step, {args.epochs} epochs"
    )
    print(f"{'stream':<28} {'plans':>6} {'host s':>8}")
    for name, cls in (("afresh per question (before)", Afresh), ("memo (now)", B.TrainStream)):
        s, n = questions(cls(rows, spec, seed=0))
        print(f"{name:<28} {n:>6} {s:>8.2f}")


if __name__ == "__main__":
    main()
