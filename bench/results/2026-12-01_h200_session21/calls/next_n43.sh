#!/usr/bin/env bash
# Session 21, call 3 (issue 25, test scoring): the MLP-in's matmul + bias + GELU as one cuDNN
# kernel (`cudnn_fusion`, jax's private wrapper of XLA's `__cudnn$fusion`), against cuBLAS with
# GELU a pass of its own; with XLA's cuDNN GEMM-fusion level left alone and at 3.
#   QUEUE=bench/results/2026-12-01_h200_session21/calls/next_n43.sh LIMIT=300 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh; export PYTHONPATH=$PYTHONPATH:$PWD
mkdir -p $O/bench
W=jax,none,cudnn,cudnn32,cudnnb
r cud python3 bench/gelu_epilogue.py --ways $W --dump $O/bench/cud
r cud3 env XLA_FLAGS=--xla_gpu_cudnn_gemm_fusion_level=3 python3 bench/gelu_epilogue.py --ways $W --dump $O/bench/cud3
( cd $O/bench && gzip -f cud*/*.txt ) 2>&1
for n in cud cud3; do echo "== $n"; tail -7 $O/logs/$n.log; done | tee -a $O/logs/summary.txt
echo QUEUE DONE | tee -a $O/logs/summary.txt
