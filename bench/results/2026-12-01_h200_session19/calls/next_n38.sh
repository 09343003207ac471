#!/usr/bin/env bash
# Session 19, call 2 (issue 25, step and scoring): what float8 matmuls in the transformer body
# would give (bench/fp8_dense.py: delayed scaling's casts and amax reductions, constant scales;
# a timing, not a recipe): the step bare and real at 16 x 1,024, the pretraining shape, and a
# scoring call at 1,024 (body alone and with the Pallas head), each beside bfloat16 in the same
# process, with kernel profiles.
#   QUEUE=bench/results/2026-12-01_h200_session19/calls/next_n38.sh LIMIT=540 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh; export PYTHONPATH=$PYTHONPATH:$PWD
r step_fp8 python3 bench/profile_step.py --batch 16 --length 1024 --steps 20 --ablations base,base+fp8,real+drop,real+drop+fp8 --profile base+fp8 --top 45
r step_pre_fp8 python3 bench/profile_step.py --batch 32 --length 1024 --steps 10 --ablations real+packed+drop,real+packed+drop+fp8 --profile ''
r score_fp8 python3 bench/profile_score.py --buckets 1024 --variants fused,fused8,nohead,nohead8 --iters 20 --scoring-head pallas --profile 1024
echo QUEUE DONE | tee -a $O/logs/summary.txt
