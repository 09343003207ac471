"""Where compiling stalls a run: one recipe command, trained with a fresh (cold) compile cache and
then again on that cache (warm); a table of the seconds stalled (issue 25: <= 20 s cold, <= 5 s
warm for TREC, SST-2 and IMDB 500/class runs). Each program compiles when its shape first comes.

    # on the GPU: TREC with small_set.py (from the 2-epoch IMDB export)
    python bench/compile_stall.py --config=configs/small_set.py -- \\
        --config.model.init=runs/pretrain/export \\
        --config.data.train_path=../shared/data/trec/train.jsonl \\
        --config.data.test_path=../shared/data/trec/test.jsonl
    # IMDB 500/class, decision.py
    python bench/compile_stall.py --config=configs/decision.py -- \\
        --config.model.init=runs/pretrain/export --config.data.per_class_limit=500
    # CPU smoke run
    python bench/compile_stall.py --config=configs/tiny.py

Each run is `python run.py --config=... --workdir=<fresh> --config.compile_cache_dir=<cache>
<overrides>` in its own process; its figures come from the workdir's train_summary.json
`phases` (commands/train.py, training/loop.py):
  first step  wall from the training loop's start to the first step's return: state set-up,
              the first step's own compile
  late        compile seconds after the first step in the train phase (a new bucket's step,
              the first validation pass) and in the score phase (test scoring)
  stall       first step + late: the wall a user waits on compiling (an upper bound: the first
              step's figure includes the state set-up)
  compile     the sum of JAX's compile events (trace, lower, XLA) in train + score; then its
              parts, the cache's reads (inside XLA) and its hits / misses
  (setup)     of the first step: the wait before the step's first call (state, resume, batch)
A line per run, then the table. Add --no-warm to skip the warm run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(config: str, workdir: Path, cache: Path, overrides: list[str]) -> dict:
    """One run.py call; its phases and its process wall time."""
    cmd = [sys.executable, str(REPO / "run.py"), f"--config={config}", f"--workdir={workdir}"]
    cmd += [f"--config.compile_cache_dir={cache}"]
    cmd += ["--config.progress_bars=False", *overrides]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    phases = json.loads((workdir / "train_summary.json").read_text())["phases"]
    return dict(phases=phases, wall=wall)


def figures(cache: str, r: dict) -> dict:
    tr, sc = r["phases"]["train"], r["phases"].get("score", {})
    late = tr.get("late_compile_s", 0.0) + sc.get("compile_s", 0.0)
    return dict(
        cache=cache,
        first_step=tr.get("first_step_s", float("nan")),
        late=late,
        late_n=tr.get("late_compiles", 0) + sc.get("compiles", 0),
        stall=tr.get("first_step_s", float("nan")) + late,
        compile=tr.get("compile_s", 0.0) + sc.get("compile_s", 0.0),
        setup=tr.get("before_first_step_s", float("nan")),
        **{p: tr.get(p, 0) + sc.get(p, 0) for p in PARTS},
        train=tr["wall_s"],
        run=r["wall"],
    )


# compile_s's parts in train + score (reports/phases.py): trace, lower, XLA (a cache hit's read
# inside it), the persistent cache's reads, hits and misses
PARTS = ("trace_s", "lower_s", "xla_s", "cache_read_s", "cache_hits", "cache_misses")

HEAD = (
    f"{'cache':>5s} {'first step':>10s} {'(setup)':>7s} {'late':>6s} {'(n)':>4s} {'stall':>6s} "
    f"{'compile':>7s} {'trace':>6s} {'lower':>6s} {'xla':>6s} {'read':>6s} {'hit/miss':>8s} "
    f"{'train':>6s} {'run':>6s}"
)


def row(f: dict) -> str:
    hits = f"{f['cache_hits']}/{f['cache_misses']}"
    return (
        f"{f['cache']:>5s} {f['first_step']:10.1f} {f['setup']:7.1f} {f['late']:6.1f} "
        f"{f['late_n']:4d} {f['stall']:6.1f} {f['compile']:7.1f} {f['trace_s']:6.1f} "
        f"{f['lower_s']:6.1f} {f['xla_s']:6.1f} {f['cache_read_s']:6.1f} {hits:>8s} "
        f"{f['train']:6.1f} {f['run']:6.1f}"
    )


def table(args, head: str, rows: list[str], figures: list[dict]) -> None:
    """The table of every run after the lines printed as they came, and --out's JSON."""
    print(f"\n{args.config} {' '.join(args.overrides)}\n{head}")
    print("\n".join(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/tiny.py")
    ap.add_argument("--no-warm", action="store_true", help="the cold run only")
    ap.add_argument("--tmp", default="", help="folder for workdirs and caches (default: a temp)")
    ap.add_argument("--out", default="", help="also write the figures here (JSON)")
    ap.add_argument("overrides", nargs="*", help="after --: run.py flags for every run")
    args = ap.parse_args()
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="compile_stall_"))
    out, cache = [], tmp / "xla"  # fresh: the first run is cold
    for kind in ["cold"] if args.no_warm else ["cold", "warm"]:
        f = figures(kind, run_once(args.config, tmp / f"run_{kind}", cache, args.overrides))
        print(row(f), flush=True)
        out.append(f)
    table(args, HEAD, [row(f) for f in out], out)


if __name__ == "__main__":
    main()
