"""How long one tiny run (the test suite's unit of end-to-end work) takes on this CPU, per setting.

    python bench/tiny_run_time.py                                  # whole vocab vs compact
    python bench/tiny_run_time.py --settings "data.compact_vocab=0;data.compact_vocab=2048"

`tests/conftest.py`'s `tiny_run_args` (configs/tiny.py, 2 epochs) on the first 12 IMDB training
reviews of each class from ../shared, 4 of each as the test set; each setting run --repeats
times in a row with one compile cache (the first run compiles, the later ones read it, as in
the test session). Prints each run's wall time and the run's own `time:` line (its phases).
Why: the suite is mostly such runs, so their cost per setting is the suite's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--settings",
        default="data.compact_vocab=0;data.compact_vocab=2048",
        help="';'-separated settings, each ','-separated config overrides",
    )
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    import conftest as c

    folder = Path(tempfile.mkdtemp(prefix="tiny_run_time_"))
    train = c.imdb_train(12)
    c.write_jsonl(folder / "train.jsonl", train)
    c.write_jsonl(folder / "test.jsonl", train[:4] + train[12:16])
    print(f"{'setting':36s} {'run':>3s} {'wall s':>7s}  phases")
    for setting in args.settings.split(";"):
        overrides = [f"--config.{o}" for o in setting.split(",") if o]
        cache = folder / f"xla_{abs(hash(setting))}"  # one compile cache per setting
        for r in range(args.repeats):
            t0 = time.perf_counter()
            p = c.run_cli(
                *c.tiny_run_args(folder),
                *overrides,
                f"--config.compile_cache_dir={cache}",
                f"--workdir={folder / f'run_{abs(hash(setting))}_{r}'}",
            )
            wall = time.perf_counter() - t0
            if p.returncode:
                raise SystemExit(f"{setting}: exit {p.returncode}\n{p.stderr[-2000:]}")
            phases = next((x for x in p.stdout.splitlines() if x.startswith("time:")), "")
            print(f"{setting:36s} {r:3d} {wall:7.1f}  {phases}", flush=True)


if __name__ == "__main__":
    main()
