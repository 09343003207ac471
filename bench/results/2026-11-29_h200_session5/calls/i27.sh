#!/usr/bin/env bash
# Issue 27, one GPU: gpt2-medium and gpt2-large train steps at T=1024 beside HF torch.compile
# (remat none, both), then ours with remat full (memory); one call.
source .gpu/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
git -C . rev-parse --short HEAD 2>/dev/null | tee $OUT/rev.txt
t0=$(date +%s)
python3 bench/bench_train_step.py --sizes gpt2-medium,gpt2-large --batch 16 --steps 10 --remat none \
  --variants cudnn --peers compile --lengths 1024 --device-time-budget 350 --out $OUT/i27_none.json 2>&1 | tee $OUT/i27_none.txt
echo "first: $(( $(date +%s) - t0 )) s" | tee -a $OUT/i27_none.txt
left=$(( 545 - ($(date +%s) - t0) ))
python3 bench/bench_train_step.py --sizes gpt2-medium,gpt2-large --batch 16 --steps 10 --remat full \
  --variants cudnn --peers '' --lengths 1024 --device-time-budget $left --out $OUT/i27_full.json 2>&1 | tee $OUT/i27_full.txt
echo "all: $(( $(date +%s) - t0 )) s"
