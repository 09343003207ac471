#!/usr/bin/env bash
# Session 20, call 4 (issue 25, test scoring): the next class pass's rows built in a thread of
# their own while this pass's batches go out (now that the rows are a few NumPy calls, not a
# per-text loop holding the interpreter lock), against ba76d7b (built between the passes);
# test scoring of a label-prefix model, 25,000 x 2, three runs each side interleaved.
#   bash bench/results/2026-12-01_h200_session20/calls/ba_ahead.sh   (carry .gpu/data .gpu_spare .whl)
set -uo pipefail; source bench/lease/env.sh
export PYTHONPATH=/tmp/site
rm -rf /tmp/old && mkdir -p /tmp/old && cp -r bench configs gencls_jax run.py pyproject.toml /tmp/old/ && cp .gpu_spare/batched_ba76d7b.py /tmp/old/gencls_jax/scoring/batched.py || exit 1
SCORE_ARGS="--ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16" timeout 540 bash bench/before_after.sh /tmp/old $D 3 score > $OUT/ba_score.log 2>&1; tail -4 $OUT/ba_score.log
