#!/usr/bin/env bash
# Session 20, call 5 (issue 25, test scoring): first fit placing a run of one length at once
# (the packed scoring plan before the first call) against one item at a time (the tree before,
# its batching.py carried as .gpu_spare/batching_before_ff.py); the plan timed alone on the
# GPU's host, then test scoring of a label-prefix model, 25,000 x 2, three runs each side.
#   bash bench/results/2026-12-01_h200_session20/calls/ba_plan.sh   (carry .gpu/data .gpu_spare .whl)
set -uo pipefail; source bench/lease/env.sh
export PYTHONPATH=/tmp/site
rm -rf /tmp/old && mkdir -p /tmp/old && cp -r bench configs gencls_jax run.py pyproject.toml /tmp/old/ && cp .gpu_spare/batching_before_ff.py /tmp/old/gencls_jax/data/batching.py || exit 1
PYTHONPATH=/tmp/site:$PWD python3 - <<'PY' 2>&1 | tee $OUT/host_plan.log
import importlib.util, sys, time, numpy as np
from gencls_jax.data import batching
spec = importlib.util.spec_from_file_location("old_batching", ".gpu_spare/batching_before_ff.py")
old = importlib.util.module_from_spec(spec); sys.modules["old_batching"] = old; spec.loader.exec_module(old)
rng = np.random.default_rng(0)
lens = np.clip(rng.lognormal(5.5, 0.6, 25000).astype(int), 5, 1023) + 1
for rep in range(3):
    for name, m in (("one at a time", old), ("runs at once", batching)):
        t = time.perf_counter(); plan = m.packed_scoring_plan(lens, 32, (256, 512, 1024), 1024, 16)
        print(f"packed plan, {name:14s} {time.perf_counter() - t:.3f} s ({len(plan)} calls)")
PY
SCORE_ARGS="--ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16" timeout 500 bash bench/before_after.sh /tmp/old $D 3 score > $OUT/ba_score.log 2>&1; tail -3 $OUT/ba_score.log; grep -a "label_prefix: cold" $OUT/ba_score.log
