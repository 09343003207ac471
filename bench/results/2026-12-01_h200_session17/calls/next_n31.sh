#!/usr/bin/env bash
# Lease of 2026-12-01, call 4 (issue 25), branch pallas-head (model.scoring_head=auto: the kernel
# on this GPU): the shipped IMDB recipe end to end on a fresh machine, the kernel's numeric
# check (test accuracy against the two-seed spread, 92.56 / 92.62 at 896025d, 92.66-92.79 since)
# and its wall figures (data + train against the <= 100 s target; test scoring).
#   QUEUE=bench/results/2026-12-01_h200_session17/calls/next_n31.sh LIMIT=560 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh
r pretrain2 python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain "${common[@]}" "${imdb[@]}" --config.train.epochs=2 || exit 1
rm -rf $O/pretrain/checkpoints
r ifull python3 run.py --config=configs/decision.py --workdir=$O/ifull "${common[@]}" "${imdb[@]}" --config.model.init=$INIT || exit 1
echo QUEUE DONE | tee -a $O/logs/summary.txt
