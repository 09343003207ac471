#!/usr/bin/env bash
# The next lease (planned 2026-11-30 after its eighth lease), issue 25: one call, then n25 if
# time is left. Carry .gpu and .whl (move .gpu/onepass out first: the tree + .gpu ran at 64 MiB).
#   QUEUE=bench/results/2026-12-01_h200_session15/calls/next_n24.sh LIMIT=540 bash bench/lease/call.sh
# 1. the step against torch.compile at today's code (hashed masks, one-read logsumexp), the
#    recipe's numerics (dropout 0.1, packed rows) and right-padded rows: the 1.5x target's row;
# 2. test scoring (label_prefix, packed 16) with the head's chunk at 8,192 (default), 2,048, 512
#    and 128 tokens: a chunk's float32 logits at 128 tokens (26 MB) fit the 50 MB L2, so the
#    one-read logsumexp would read them from L2, not HBM; the chunks' loop costs launches;
# 3. a kernel profile of today's step (T = 1,024, batch 16): where the ~35 ms go now;
# 4. a kernel profile of a scoring call (32 rows x 1,024, the fused head, and the body alone):
#    the head's share of the ~26 ms per call, against the H100's 17 ms of 49.
set -uo pipefail; source bench/lease/env.sh
mkdir -p $O/bench
[ -f $O/bench/step_vs_compile.log ] || env PYTHONPATH=/tmp/site:$PWD timeout 300 python3 bench/bench_train_step.py --lengths 1024 --batch 16 --steps 20 --repeats 3 --variants cudnn,cudnn+packed --dropout 0.1 --prng hash > $O/bench/step_vs_compile.log 2>&1; grep -aE "^(ours|HF|torch)|compile" $O/bench/step_vs_compile.log | tail -8
for ch in 8192 2048 512 128; do
  [ -f $O/bench/score_chunk$ch.log ] || env PYTHONPATH=/tmp/site:$PWD timeout 120 python3 bench/bench_score.py --data $D --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16 --peer-precisions '' --set model.head_chunk=$ch > $O/bench/score_chunk$ch.log 2>&1; tr '\r' '\n' < $O/bench/score_chunk$ch.log | grep -a "^ours label" | sed "s/^/chunk $ch: /"
done
[ -f $O/bench/profile_step.log ] || env PYTHONPATH=/tmp/site:$PWD timeout 200 python3 bench/profile_step.py --batch 16 --length 1024 --steps 15 --ablations base --profile base > $O/bench/profile_step.log 2>&1; tail -30 $O/bench/profile_step.log
[ -f $O/bench/profile_score.log ] || env PYTHONPATH=/tmp/site:$PWD timeout 150 python3 bench/profile_score.py --buckets 1024 --variants fused,nohead --iters 10 --profile 1024 > $O/bench/profile_score.log 2>&1; tail -30 $O/bench/profile_score.log
echo QUEUE DONE | tee -a $O/logs/summary.txt
