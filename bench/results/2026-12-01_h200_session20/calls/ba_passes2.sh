#!/usr/bin/env bash
# Session 20, call 3 (issue 25, test scoring): the host's share of test scoring on the GPU's
# host: (1) make_rows and the packed plan timed alone on IMDB-sized synthetic rows (25,000 texts,
# ~300 tokens, a 1-token label prefix), 942a81a's per-text loop beside the vectorised first rows;
# (2) test scoring, 25,000 x 2 label prefix, three runs each side interleaved: this tree (first
# rows vectorised, the second class pass reusing the first pass's plan) against 942a81a's rows.py
# and batched.py.
#   bash bench/results/2026-12-01_h200_session20/calls/ba_passes2.sh   (carry .gpu/data .gpu_spare .whl)
set -uo pipefail; source bench/lease/env.sh
export PYTHONPATH=/tmp/site
rm -rf /tmp/old && mkdir -p /tmp/old && cp -r bench configs gencls_jax run.py pyproject.toml /tmp/old/ && cp .gpu_spare/rows_942a81a.py /tmp/old/gencls_jax/data/rows.py && cp .gpu_spare/batched_942a81a.py /tmp/old/gencls_jax/scoring/batched.py || exit 1
PYTHONPATH=/tmp/site:$PWD python3 - <<'PY' 2>&1 | tee $OUT/host_rows.log
import importlib.util, time, numpy as np
from gencls_jax.data.rows import make_rows, row_lengths
from gencls_jax.data.batching import scoring_calls
spec = importlib.util.spec_from_file_location("old_rows", ".gpu_spare/rows_942a81a.py")
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
rng = np.random.default_rng(0)
lens = np.clip(rng.lognormal(5.5, 0.6, 25000).astype(int), 5, 3000)
toks = [rng.integers(0, 50000, n).astype(np.int32) for n in lens]
pre = [np.array([11], np.int32)] * 25000
for rep in range(3):
    for name, f in (("942a81a loop", old.make_rows), ("vectorised", make_rows)):
        t = time.perf_counter(); r = f(toks, 1024, 50256, "truncate", None, 50256, pre, None, 1)
        print(f"make_rows {name:14s} {time.perf_counter() - t:.3f} s ({len(r.inputs)} rows)")
    t = time.perf_counter(); plan = scoring_calls(row_lengths(r), 32, (256, 512, 1024), 1024, 1, pack_texts=16)
    print(f"packed plan (first fit)  {time.perf_counter() - t:.3f} s ({len(plan)} calls)")
PY
SCORE_ARGS="--ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16" timeout 500 bash bench/before_after.sh /tmp/old $D 3 score > $OUT/ba_score.log 2>&1; tail -4 $OUT/ba_score.log
