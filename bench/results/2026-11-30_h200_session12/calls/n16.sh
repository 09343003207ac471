#!/usr/bin/env bash
# Lease of 2026-11-30's sixth session, call 4 (issue 25), after n15 found TREC's packed rows
# 9% slower with cuDNN's offsets kernel: is it the kernel at T = 64 or the class axis folded
# into rows (n15 changed both)? TREC packed, folded, dense mask (`model.packed_offsets_from`
# above its rows), cold; and the offsets check with its noise floor (XLA's attention).
#   QUEUE=bench/results/2026-11-30_h200_session12/calls/n16.sh LIMIT=230 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh
export LV_INIT=scratch LVX="--config.model.size=gpt2 --config.train.max_steps=2592 --config.train.min_steps=0 --config.train.early_stop_patience=0"
lv() { bash bench/lease/lever.sh "$@"; [ $? = 255 ] && exit 130; return 0; }
mkdir -p $O/bench; [ -f $O/bench/cudnn_packed4.log ] || PYTHONPATH=/tmp/site:$PWD timeout 100 python3 bench/check_cudnn_packed.py --steps 5 > $O/bench/cudnn_packed4.log 2>&1; tail -8 $O/bench/cudnn_packed4.log
lv trec_foldmask_s0 --config.model.packed_offsets_from=100000
echo QUEUE DONE | tee -a $O/logs/summary.txt
