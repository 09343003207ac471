#!/usr/bin/env bash
# The next lease (planned 2026-11-30 after its ninth lease), issue 25, from the branch
# `pallas-head` (check it out first; carry .gpu and .whl): the fused scoring head, unmeasured.
#   QUEUE=bench/results/2026-11-30_h200_session16/calls/next_n28.sh LIMIT=540 bash bench/lease/call.sh
# 1. the head alone (`bench/bench_head.py`: 65,536 tokens x 768 x 50,257, bfloat16): XLA's
#    chunked head (what scoring runs: 13.8 of a call's 44 ms in n24's profile) against the
#    Pallas kernel at six tile configurations and torch; every row's max |diff| from XLA's;
# 2. if a kernel row is faster than xla: test scoring (label_prefix, packed 16) with
#    `--set model.scoring_head=pallas` against the default in the same call (n24: 11.49 s warm);
# 3. a wider tile sweep around the best row (block_k 32/128, num_stages 2/4).
set -uo pipefail; source bench/lease/env.sh
mkdir -p $O/bench
b() { local n=$1; shift; [ -f $O/bench/$n.log ] && return 0; env PYTHONPATH=/tmp/site:$PWD "$@" > $O/bench/$n.part 2>&1; mv $O/bench/$n.part $O/bench/$n.log; }
b head timeout 240 python3 bench/bench_head.py; cat $O/bench/head.log | tail -12
if awk '/^best pallas:/ {exit !($NF > 1.0)} END {}' $O/bench/head.log && grep -q "^best pallas:" $O/bench/head.log; then
  for hk in xla pallas; do
    b score_$hk timeout 150 python3 bench/bench_score.py --data $D --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16 --peer-precisions '' --set model.scoring_head=$hk; tr '\r' '\n' < $O/bench/score_$hk.log | grep -a "^ours label\|Error" | sed "s/^/$hk: /"
  done
fi
b head_sweep timeout 240 python3 bench/bench_head.py --no-torch --configs "128,128,32,8,3;128,128,128,8,3;128,128,64,8,2;128,128,64,8,4;256,128,64,8,3;128,256,32,8,3;64,128,128,4,3"; tail -9 $O/bench/head_sweep.log
echo QUEUE DONE | tee -a $O/logs/summary.txt
