"""A recipe's train phase at several `train.steps_per_call` settings (issue 25: TREC's train
phase <= 30 s warm at the same number of optimizer updates; several updates per call of the
jitted step, so a small model's step is not bound by the host).

    # on the GPU: TREC with small_set.py (from the 2-epoch IMDB export), S = 1, 4, 16
    python bench/steps_per_call.py --config=configs/small_set.py --per-call=1,4,16 -- \\
        --config.model.init=runs/pretrain/export \\
        --config.data.train_path=../shared/data/trec/train.jsonl \\
        --config.data.test_path=../shared/data/trec/test.jsonl
    # CPU smoke run
    python bench/steps_per_call.py --config=configs/tiny.py --per-call=1,4

For each S, one warm-up run (the same recipe) fills a compile cache of its own with every
program of the run (each compiled when its shape first came), then the timed run trains the
whole recipe again on that warm cache (neither scores the test set: `eval.splits=()`), each
`python run.py` in its own process (`compile_stall.run_once`). From the timed run's
train_summary.json and metrics.jsonl:
  train    the train phase's wall (with its validation passes and reading the compiled programs)
  first    wall before the first step returned (state set-up, reading the compiled programs)
  steps    optimizer updates (the same at every S: a call never crosses a checkpoint or an
           epoch's end, `training/loop.py`)
  steps/s  steps / (train - first): validation passes included
  it/s     median of the logged windows' steps_per_s (train.log_every steps each)
  loss     the last logged train loss, and best = train.best_metric's best value: the same
           run at every S (bit for bit on the CPU; within float rounding on a GPU, where
           XLA may fuse the scanned step differently)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from compile_stall import run_once, table

HEAD = (
    f"{'S':>3s} {'train':>7s} {'first':>6s} {'steps':>6s} {'steps/s':>8s} {'it/s':>8s} "
    f"{'loss':>9s} {'best':>9s}"
)


def figures(per_call: int, wd: Path, r: dict) -> dict:
    tr = r["phases"]["train"]
    summary = json.loads((wd / "train_summary.json").read_text())
    rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    rates = [x["steps_per_s"] for x in rows if x.get("kind") == "train" and "steps_per_s" in x]
    steps, first = int(summary["steps"]), tr.get("first_step_s", 0.0)
    return dict(
        per_call=per_call,
        train=tr["wall_s"],
        first=first,
        steps=steps,
        steps_per_s=steps / max(tr["wall_s"] - first, 1e-9),
        logged_it_s=float(np.median(rates)) if rates else float("nan"),
        loss=summary["final_train_loss"],
        best=float("nan") if summary["best"] is None else summary["best"],  # no val pass yet
        run=r["wall"],
    )


def row(f: dict) -> str:
    return (
        f"{f['per_call']:3d} {f['train']:7.1f} {f['first']:6.1f} {f['steps']:6d} "
        f"{f['steps_per_s']:8.2f} {f['logged_it_s']:8.2f} {f['loss']:9.5f} {f['best']:9.5f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/tiny.py")
    ap.add_argument("--per-call", default="1,4,16", help="train.steps_per_call settings")
    ap.add_argument("--tmp", default="", help="folder for workdirs and caches (default: a temp)")
    ap.add_argument("--out", default="", help="also write the figures here (JSON)")
    ap.add_argument("overrides", nargs="*", help="after --: run.py flags for every run")
    args = ap.parse_args()
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="steps_per_call_"))
    out = []
    for s in (int(x) for x in args.per_call.split(",")):
        over = [*args.overrides, f"--config.train.steps_per_call={s}", "--config.eval.splits=()"]
        cache = tmp / f"xla_{s}"
        run_once(args.config, tmp / f"warmup_{s}", cache, over)
        wd = tmp / f"run_{s}"
        f = figures(s, wd, run_once(args.config, wd, cache, over))
        print(row(f), flush=True)
        out.append(f)
    table(args, HEAD, [row(f) for f in out], out)


if __name__ == "__main__":
    main()
