#!/usr/bin/env bash
# Session 19, call 5 (issue 25, test scoring; call 4 stopped at once: no git history on the device): every class pass's rows built ahead in a thread of
# their own (the commit after 39a8db5) against building them between the passes (39a8db5), where the
# progress bars of earlier leases showed the device idle ~0.4 s at the pass change; test scoring
# of a label-prefix model, 25,000 x 2, three runs each side interleaved.
#   bash bench/results/2026-12-01_h200_session19/calls/ba_passes.sh   (carry .gpu/data .gpu_spare .whl)
set -uo pipefail; source bench/lease/env.sh
export PYTHONPATH=/tmp/site
# the device's copy has no git history: the old tree is this one with 39a8db5's batched.py
# (carried as .gpu_spare/batched_39a8db5.py: `git show 39a8db5:gencls_jax/scoring/batched.py`)
rm -rf /tmp/old && mkdir -p /tmp/old && cp -r bench configs gencls_jax run.py pyproject.toml /tmp/old/ && cp .gpu_spare/batched_39a8db5.py /tmp/old/gencls_jax/scoring/batched.py || exit 1
SCORE_ARGS="--ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16" timeout 500 bash bench/before_after.sh /tmp/old $D 3 score > $OUT/ba_score.log 2>&1; tail -8 $OUT/ba_score.log
