#!/usr/bin/env bash
# Session 18, call 2 (issue 25, compile): (1) is a rolled layer loop as slow for scoring (a
# forward pass: no residuals saved for a backward, so none of the training loop's copies) as for
# training? A rolled scorer would compile in about half the time (the late compile, 3-4 s of
# each cold stall, and test scoring's cold figure). (2) Where the recipe step's 17 s of XLA go
# (XLA's own timers, IMDB 500/class cold). (3) Two more XLA flags on the training loop's copies.
#   QUEUE=bench/results/2026-12-01_h200_session18/calls/next_n34.sh LIMIT=540 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh
mkdir -p $O/bench; export PYTHONPATH=$PYTHONPATH:$PWD
b() { local name=$1; shift; [ -f $O/done/$name ] && return 0; "$@" >> $O/bench/$name.log 2>&1; local rc=$?; echo "$name rc=$rc" | tee -a $O/logs/summary.txt; [ $rc = 0 ] && touch $O/done/$name; }
sc() { local name=$1; shift; b $name timeout 150 python3 bench/bench_score.py --data $D --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16 --peer-precisions '' "$@"; tr '\r' '\n' < $O/bench/$name.log | grep -a "^ours label\|Error" | sed "s/^/$name: /" | tee -a $O/logs/summary.txt; }
sc score_u1 --set model.layer_unroll=1
sc score_u0
sc score_u4 --set model.layer_unroll=4
i500() { local n=$1; shift; r $n python3 run.py --config=configs/decision.py --workdir=$O/$n "${common[@]}" "${imdb[@]}" --config.model.init=scratch --config.model.size=gpt2 --config.seed=0 --config.data.per_class_limit=500 --config.eval.splits="('val',)" --config.train.max_steps=300 --config.train.min_steps=0 --config.train.early_stop_patience=0 --config.compile_cache_dir=/tmp/xla_lv/$n "$@" || exit 1; rm -rf $O/$n/checkpoints $O/$n/export; }
TF_CPP_MIN_LOG_LEVEL=0 TF_CPP_VMODULE=gpu_compiler=1,nvptx_compiler=1 i500 i500_timers
grep -aE 'GpuCompiler|NVPTX|ptxas|took|Autotun' $O/logs/i500_timers.log | grep -av 'I0000' | cut -c1-220 | head -60 > $O/bench/i500_timers_grep.log
RA=--xla_gpu_copy_insertion_use_region_analysis=true
ZI=--xla_gpu_enable_dus_accumulator_zero_init_elimination=true
for f in RA ZI; do b l1024_$f env XLA_FLAGS="${!f}" timeout 150 python3 bench/profile_step.py --profile '' --batch 16 --length 1024 --steps 15 --ablations rolled; grep -E 'step .* ms' $O/bench/l1024_$f.log | sed "s/^/$f /" | tee -a $O/logs/summary.txt; done
i500 i500_u1 --config.model.layer_unroll=1
echo QUEUE DONE | tee -a $O/logs/summary.txt
