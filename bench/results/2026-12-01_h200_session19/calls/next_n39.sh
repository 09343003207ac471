#!/usr/bin/env bash
# Session 19, call 3 (issue 25, step): the real step with float8 body matmuls measured again (in
# call 2 the memoised compiled step made that row the bfloat16 step: profile_step now clears the
# memo), and kernel profiles of the real step without and with dropout (where dropout's ~0.8 ms go).
#   QUEUE=bench/results/2026-12-01_h200_session19/calls/next_n39.sh LIMIT=400 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh; export PYTHONPATH=$PYTHONPATH:$PWD
r step_real_fp8 python3 bench/profile_step.py --batch 16 --length 1024 --steps 20 --ablations real+drop,real+drop+fp8 --profile ''
r prof_real_nodrop python3 bench/profile_step.py --batch 16 --length 1024 --steps 10 --ablations real --profile real --top 45
r prof_real_drop python3 bench/profile_step.py --batch 16 --length 1024 --steps 10 --ablations real+drop --profile real+drop --top 45
echo QUEUE DONE | tee -a $O/logs/summary.txt
