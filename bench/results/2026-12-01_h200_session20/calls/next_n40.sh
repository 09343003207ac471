#!/usr/bin/env bash
# Session 20, call 1 (issue 25, test scoring): where a label-prefix scoring call (one model,
# packed rows through cuDNN's offsets kernel: what decision.py's test scoring runs) spends its
# time, beside the stacked two-model call the earlier profiles measured; and whether XLA puts
# the MLP's bias and GELU into the cuBLASLt matmul's epilogue for one model's matmul.
#   QUEUE=bench/results/2026-12-01_h200_session20/calls/next_n40.sh LIMIT=540 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh; export PYTHONPATH=$PYTHONPATH:$PWD
mkdir -p $O/bench
r gelu python3 bench/gelu_epilogue.py --dump $O/bench/gelu
r score_lp env XLA_FLAGS="--xla_dump_to=$O/bench/lpdump --xla_dump_hlo_module_re=jit_lp" python3 bench/profile_score.py --buckets 1024 --variants lp,nohead,fused --iters 20 --scoring-head pallas --profile 1024 --profile-variants lp,fused
( cd $O/bench && grep -ho '"epilogue":"[A-Z_]*"' lpdump/*after_optimizations.txt | sort | uniq -c; grep -c "cublas" lpdump/*after_optimizations.txt; gzip -f lpdump/*.txt gelu/*.txt ) 2>&1 | tee -a $O/logs/summary.txt
echo QUEUE DONE | tee -a $O/logs/summary.txt
