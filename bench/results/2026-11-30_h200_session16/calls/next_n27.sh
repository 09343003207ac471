#!/usr/bin/env bash
# The fourth call of 2026-11-30's ninth lease, issue 25: n24's TREC autotune-level-1 gain (20.7 s
# stall against n23's 25.8 s on another machine) as an A/B on one machine: level 4 (default),
# then level 1, each with a fresh compile cache. Carry .gpu and .whl.
#   QUEUE=bench/results/2026-11-30_h200_session16/calls/next_n27.sh LIMIT=200 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh
export LV_INIT=scratch LVX="--config.model.size=gpt2 --config.train.max_steps=2592 --config.train.min_steps=0 --config.train.early_stop_patience=0"
bash bench/lease/lever.sh trec_at4_s0; [ $? = 255 ] && exit 130
XLA_FLAGS=--xla_gpu_autotune_level=1 bash bench/lease/lever.sh trec_at1b_s0; [ $? = 255 ] && exit 130
echo QUEUE DONE | tee -a $O/logs/summary.txt
