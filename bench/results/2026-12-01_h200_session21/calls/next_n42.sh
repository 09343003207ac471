#!/usr/bin/env bash
# Session 21, call 2 (issue 25, step and test scoring): XLA's other GEMM-fusion flags this jaxlib
# knows (n41's `flags` list), each on the real training step with dropout (whose backward GEMMs
# XLA fuses with the regenerated masks into Triton GEMMs: 4.5 ms a step, n39) and on the
# label-prefix scoring call; one process per row, the default first and last.
#   QUEUE=bench/results/2026-12-01_h200_session21/calls/next_n42.sh LIMIT=540 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh; export PYTHONPATH=$PYTHONPATH:$PWD
mkdir -p $O/bench
STEP=(python3 bench/profile_step.py --batch 16 --length 1024 --steps 20 --ablations real+drop --profile '')
LP=(python3 bench/profile_score.py --buckets 1024 --variants lp --iters 30 --scoring-head pallas --profile 0)
declare -A F=(
  [ws]=--xla_gpu_experimental_enable_triton_warp_specialization=true
  [cudnn1]=--xla_gpu_cudnn_gemm_fusion_level=1
  [cudnn2]=--xla_gpu_cudnn_gemm_fusion_level=2
  [cudnn3]=--xla_gpu_cudnn_gemm_fusion_level=3
  [fauto]=--xla_gpu_experimental_enable_fusion_autotuner=true
  [mof]=--xla_gpu_unsupported_enable_triton_multi_output_fusion=true
  [any_cudnn3]="--xla_gpu_triton_gemm_any=true --xla_gpu_cudnn_gemm_fusion_level=3"
)
r step_def "${STEP[@]}"
for k in ws cudnn1 cudnn2 cudnn3 fauto mof; do r step_$k env XLA_FLAGS="${F[$k]}" "${STEP[@]}"; done
r step_def2 "${STEP[@]}"
r lp_def "${LP[@]}"
for k in ws cudnn3 any_cudnn3 fauto; do r lp_$k env XLA_FLAGS="${F[$k]}" "${LP[@]}"; done
for n in step_def step_ws step_cudnn1 step_cudnn2 step_cudnn3 step_fauto step_mof step_def2; do echo "$n $(grep -a 'step ' $O/logs/$n.log | tail -1)"; done | tee -a $O/logs/summary.txt
for n in lp_def lp_ws lp_cudnn3 lp_any_cudnn3 lp_fauto; do echo "$n $(grep -a '^lp ' $O/logs/$n.log | tail -1)"; done | tee -a $O/logs/summary.txt
echo QUEUE DONE | tee -a $O/logs/summary.txt
