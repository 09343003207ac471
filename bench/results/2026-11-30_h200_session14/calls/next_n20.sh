#!/usr/bin/env bash
# Lease of 2026-11-30's seventh session, call 4 (issue 25), the last 250 s:
#   QUEUE=bench/results/2026-11-30_h200_session14/calls/next_n20.sh LIMIT=185 bash bench/lease/call.sh
# 1. the init program's cold compile, the full configured pass (cuDNN, unrolled) against
#    gpt2.init_config's (bench/init_compile.py), and their parameters' equality;
# 2. dropout's masks: the step (T = 1,024, packed rows, dropout 0.1) with bernoulli masks
#    (threefry2x32) against model.dropout_masks=hash, and without dropout: tok/s and compile.
set -uo pipefail; source bench/lease/env.sh
mkdir -p $O/bench
[ -f $O/bench/init_compile.log ] || PYTHONPATH=/tmp/site:$PWD timeout 90 python3 bench/init_compile.py --size gpt2 --attention cudnn > $O/bench/init_compile.log 2>&1; cat $O/bench/init_compile.log | tail -3
[ -f $O/bench/dropout_masks.log ] || PYTHONPATH=/tmp/site:$PWD python3 bench/bench_train_step.py --lengths 1024 --batch 16 --steps 10 --repeats 3 --variants cudnn+packed --peers '' --dropout 0.1 --prng hash,threefry2x32 --device-time-budget 120 > $O/bench/dropout_masks.log 2>&1; grep "^ours\|skipped" $O/bench/dropout_masks.log
echo QUEUE DONE | tee -a $O/logs/summary.txt
