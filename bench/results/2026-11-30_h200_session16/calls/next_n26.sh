#!/usr/bin/env bash
# The third call of 2026-11-30's ninth lease, issue 25, on n25's warm machine: the 2-epoch
# pretraining again with n25's compile cache (the warm figure beside n22's 117.8 s), then test
# scoring at autotune level 1 (n25's queue stopped before it). Carry .gpu and .whl.
#   QUEUE=bench/results/2026-11-30_h200_session16/calls/next_n26.sh LIMIT=400 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh
mkdir -p $O/bench
b() { local n=$1; shift; [ -f $O/bench/$n.log ] && return 0; env PYTHONPATH=/tmp/site:$PWD "$@" > $O/bench/$n.part 2>&1; mv $O/bench/$n.part $O/bench/$n.log; }
r pretrain2_warm python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain2_warm "${common[@]}" "${imdb[@]}" --config.train.epochs=2 || exit 1
rm -rf $O/pretrain2_warm/checkpoints $O/pretrain2_warm/export
XLA_FLAGS=--xla_gpu_autotune_level=1 b score_at1 timeout 120 python3 bench/bench_score.py --data $D --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16 --peer-precisions ''; tr '\r' '\n' < $O/bench/score_at1.log | grep -a "^ours label" | sed "s/^/level 1: /"
echo QUEUE DONE | tee -a $O/logs/summary.txt
