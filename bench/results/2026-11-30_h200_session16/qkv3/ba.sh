#!/usr/bin/env bash
# qkv3 before/after: scoring (the hypothesis) first, then the step; one run each side.
set -uo pipefail; source bench/lease/env.sh
export PYTHONPATH=/tmp/site
SCORE_ARGS="--ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16" timeout 140 bash bench/before_after.sh .gpu/old $D 1 score > $OUT/ba_score.log 2>&1; tail -3 $OUT/ba_score.log
STEP_ARGS="--variants cudnn+packed --dropout 0.1 --prng hash --steps 20 --repeats 3" timeout 100 bash bench/before_after.sh .gpu/old $D 1 step > $OUT/ba_step.log 2>&1; tail -3 $OUT/ba_step.log
