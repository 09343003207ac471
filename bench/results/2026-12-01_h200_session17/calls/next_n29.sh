#!/usr/bin/env bash
# Lease of 2026-12-01, call 2 (issue 25), branch pallas-head with `model.head_tiles`
# (default 128,256,64,8,3: n28's fastest, 1.31x XLA's head).
#   QUEUE=bench/results/2026-12-01_h200_session17/calls/next_n29.sh LIMIT=540 bash bench/lease/call.sh
# 1. tiles around n28's best; 2. test scoring (label_prefix, packed 16) xla / pallas / xla /
# pallas in one call (n28 ran pallas at the old 64,128 default: 11.78 vs 11.85 s);
# 3. if the sweep's best beats the default by > 3%, scoring at that tile too.
set -uo pipefail; source bench/lease/env.sh
mkdir -p $O/bench
b() { local n=$1; shift; [ -f $O/bench/$n.log ] && return 0; env PYTHONPATH=/tmp/site:$PWD "$@" > $O/bench/$n.part 2>&1; mv $O/bench/$n.part $O/bench/$n.log; }
b head_sweep2 timeout 200 python3 bench/bench_head.py --no-torch --configs "128,256,64,8,3;128,256,64,8,4;128,256,128,8,3;128,256,64,4,3;64,256,64,8,3;256,256,64,8,3;128,512,64,8,3;128,256,32,8,4;64,256,64,4,4"; tail -12 $O/bench/head_sweep2.log
for run in xla_a pallas_a xla_b pallas_b; do
  hk=${run%_*}
  b score_$run timeout 150 python3 bench/bench_score.py --data $D --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16 --peer-precisions '' --set model.scoring_head=$hk; tr '\r' '\n' < $O/bench/score_$run.log | grep -a "^ours label\|Error" | sed "s/^/$run: /"
done
best=$(awk '/^pallas 128,256,64,8,3 / {d=$3} /^best pallas:/ {b=$3; m=$4} END {if (m < 0.97 * d) print b}' $O/bench/head_sweep2.log)
if [ -n "$best" ]; then
  b score_pallas_best timeout 150 python3 bench/bench_score.py --data $D --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16 --peer-precisions '' --set model.scoring_head=pallas --set model.head_tiles=$best; tr '\r' '\n' < $O/bench/score_pallas_best.log | grep -a "^ours label\|Error" | sed "s/^/pallas $best: /"
fi
echo QUEUE DONE | tee -a $O/logs/summary.txt
