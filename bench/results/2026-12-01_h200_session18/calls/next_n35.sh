#!/usr/bin/env bash
# Session 18, call 3 (issue 25, compile): the cold stall of each small set at today's code on one
# machine (SST-2's was last measured before packed scoring), beside a rolled layer loop
# (layer_unroll=1: half the compile, a third slower step) for the trade's two sides; scoring
# with 4 layers per loop iteration again (n34: 1 s less cold, warm equal), order swapped.
#   QUEUE=bench/results/2026-12-01_h200_session18/calls/next_n35.sh LIMIT=540 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh
mkdir -p $O/bench; export PYTHONPATH=$PYTHONPATH:$PWD
b() { local name=$1; shift; [ -f $O/done/$name ] && return 0; "$@" >> $O/bench/$name.log 2>&1; local rc=$?; echo "$name rc=$rc" | tee -a $O/logs/summary.txt; [ $rc = 0 ] && touch $O/done/$name; }
sc() { local name=$1; shift; b $name timeout 150 python3 bench/bench_score.py --data $D --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16 --peer-precisions '' "$@"; tr '\r' '\n' < $O/bench/$name.log | grep -a "^ours label\|Error" | sed "s/^/$name: /" | tee -a $O/logs/summary.txt; }
export LV_INIT=scratch LVX="--config.model.size=gpt2 --config.train.max_steps=2592 --config.train.min_steps=0 --config.train.early_stop_patience=0"
for run in sst2_u0_s0 trec_u0_s0 sst2_u1_s0 trec_u1_s0; do
  u=${run#*_u}; u=${u%%_*}
  bash bench/lease/lever.sh $run --config.model.layer_unroll=$u; [ $? = 255 ] && exit 130
done
sc score_u4b --set model.layer_unroll=4
sc score_u0b
ZI=--xla_gpu_enable_dus_accumulator_zero_init_elimination=true
b l64_ZI env XLA_FLAGS="$ZI" timeout 150 python3 bench/profile_step.py --profile '' --batch 48 --length 64 --steps 30 --ablations rolled,base
grep -E 'step .* ms' $O/bench/l64_ZI.log | sed "s/^/ZI /" | tee -a $O/logs/summary.txt
echo QUEUE DONE | tee -a $O/logs/summary.txt
