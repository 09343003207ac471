#!/usr/bin/env bash
# Session 21, call 4 (issue 25, test scoring): the MLP-in's matmul + bias + GELU as one Pallas
# (Triton) kernel of ours, at several tiles, against cuBLAS with GELU a pass of its own; and
# XLA's own Triton epilogue GEMM (n43's `cudnn32`) with warp specialization allowed.
#   QUEUE=bench/results/2026-12-01_h200_session21/calls/next_n44.sh LIMIT=300 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh; export PYTHONPATH=$PYTHONPATH:$PWD
T=pallas-128-256-64-8-3,pallas-128-256-64-8-4,pallas-128-128-64-4-3,pallas-128-128-64-8-4,pallas-256-128-64-8-3,pallas-128-256-32-8-4,pallas-64-256-64-4-3,pallas-128-256-128-8-3,pallasnone-128-256-64-8-3,pallasnone-128-128-64-4-3
r pal python3 bench/gelu_epilogue.py --ways jax,none,$T,jax,none
r ws32 env XLA_FLAGS=--xla_gpu_experimental_enable_triton_warp_specialization=true python3 bench/gelu_epilogue.py --ways jax,cudnn32
for n in pal ws32; do echo "== $n"; grep -aE '^(jax|none|pallas|cudnn)' $O/logs/$n.log; grep -a failed $O/logs/$n.log | cut -c1-300; done | tee -a $O/logs/summary.txt
echo QUEUE DONE | tee -a $O/logs/summary.txt
