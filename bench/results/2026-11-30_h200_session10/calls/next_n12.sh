#!/usr/bin/env bash
# Next lease (planned 2026-11-30, fourth session), issue 25 only (issue 24 resolved): what a cold
# compile costs per program and what the step loses for it. One queue fired up to three times
# back to back on one warm machine (`QUEUE=bench/results/2026-11-30_h200_session10/calls/next_n12.sh
# LIMIT=530 bash bench/lease/call.sh`, carry .gpu and .whl). No export: compile and step rates do
# not depend on the weights, so every run starts from the hub's GPT-2 shapes at random
# (`model.init=scratch`) and trains a fixed 1,300 updates (two TREC epochs), validation only.
# Each lever has its own empty compile cache (cold); a second seed of one lever reads it warm.
# 1. TREC layer_unroll 0 (full, the default) / 4 / 1: first-step compile against steps/s;
# 2. TREC with XLA's autotuning off (`--xla_gpu_autotune_level=0`): the compile's autotuning share
#    and what the step loses without it;
# 3. SST-2 the same two contrasts (its 4 cold programs: 44-53 s of stall at da5b105);
# 4. IMDB 500/class `decision.py` cold then warm at this revision (target <= 20 s / <= 5 s).
set -uo pipefail; source bench/lease/env.sh
export LV_INIT=scratch LVX="--config.model.size=gpt2 --config.train.max_steps=1300 --config.train.min_steps=0"
lv() { bash bench/lease/lever.sh "$@"; [ $? = 255 ] && exit 130; return 0; }
lv trec_unroll0_s0; lv trec_unroll0_s1  # seed 1 shares seed 0's cache: warm
lv trec_unroll4_s0 --config.model.layer_unroll=4
lv trec_unroll1_s0 --config.model.layer_unroll=1
XLA_FLAGS=--xla_gpu_autotune_level=0 lv trec_autotune0_s0
lv sst2_unroll0_s0
lv sst2_unroll4_s0 --config.model.layer_unroll=4
# sst2_autotune0 dropped after the first call: TREC autotune0 trained at ~7 steps/s (train phase 204 s)
for s in 0 1; do
  r i500_c$s python3 run.py --config=configs/decision.py --workdir=$O/i500_c$s "${common[@]}" "${imdb[@]}" --config.model.init=scratch --config.model.size=gpt2 --config.data.per_class_limit=500 --config.seed=$s --config.data.split_seed=0 --config.eval.splits="('val',)" --config.compile_cache_dir=/tmp/xla_lv/i500 || exit 1
  rm -rf $O/i500_c$s/checkpoints $O/i500_c$s/export
done
echo QUEUE DONE | tee -a $O/logs/summary.txt
