#!/usr/bin/env bash
# Session 6, call 1: the 2-epoch export, then IMDB full with decision.py (issue 24's 94.5 target;
# its wall is contended: lever runs share the GPU) beside the lever pool (issue 24, lever 3: 7
# levers x 3 seeds x TREC/SST-2 on validation, 7 at once: small sets leave the GPU idle).
set -uo pipefail; source .gpu/env.sh
[ -f $O/logs/gpu.txt ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $O/logs/gpu.txt
r pretrain python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain "${common[@]}" "${imdb[@]}" --config.train.epochs=2 || exit 1
rm -rf $O/pretrain/checkpoints
( export XLA_PYTHON_CLIENT_MEM_FRACTION=0.3; r imdb python3 run.py --config=configs/decision.py --workdir=$O/imdb "${common[@]}" "${imdb[@]}" --config.model.init=$INIT && { [ -f $O/collect/imdb/metrics.json ] || collect imdb; } ) &  # collected before eval rewrites it
imdb=$!
xargs -P ${POOL:-7} -L 1 bash .gpu/lever.sh < .gpu/levers.txt
wait $imdb
echo QUEUE DONE | tee -a $O/logs/summary.txt
