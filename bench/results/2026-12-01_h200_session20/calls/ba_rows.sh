#!/usr/bin/env bash
# Session 20, call 2 (issue 25, test scoring): every text's first scoring row built by one
# vectorised gather (`data.rows.first_rows`) against the per-text loop (942a81a's rows.py), where
# the device waits for a pass's rows at the start of test scoring and at the class-pass change;
# test scoring of a label-prefix model, 25,000 x 2, three runs each side interleaved.
#   bash bench/results/2026-12-01_h200_session20/calls/ba_rows.sh   (carry .gpu/data .gpu_spare .whl)
set -uo pipefail; source bench/lease/env.sh
export PYTHONPATH=/tmp/site
# the device's copy has no git history: the old tree is this one with 942a81a's rows.py
# (carried as .gpu_spare/rows_942a81a.py: `git show 942a81a:gencls_jax/data/rows.py`)
rm -rf /tmp/old && mkdir -p /tmp/old && cp -r bench configs gencls_jax run.py pyproject.toml /tmp/old/ && cp .gpu_spare/rows_942a81a.py /tmp/old/gencls_jax/data/rows.py || exit 1
SCORE_ARGS="--ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16" timeout 540 bash bench/before_after.sh /tmp/old $D 3 score > $OUT/ba_score.log 2>&1; tail -8 $OUT/ba_score.log
