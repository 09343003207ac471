#!/usr/bin/env bash
# Session 18, call 1 (issue 25, compile and step): why does a rolled layer loop cost a quarter
# of the step, and does an XLA flag take that back? A rolled loop (`model.layer_unroll=1`)
# compiles in about half the time (TREC's cold stall 11.2 s against 31.8, fifth lease), so a
# rolled loop at the unrolled step's speed would meet the 20 s cold target on every set.
# Hypotheses: the while loop leaves XLA's command buffers (CUDA graphs: WHILE is not in the
# default list), and GEMMs cannot read a dynamic slice of the stacked residuals / weights in
# place (dynamic slice fusion is off by default), so every iteration copies them.
#   QUEUE=bench/results/2026-12-01_h200_session18/calls/next_n33.sh LIMIT=540 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh
mkdir -p $O/bench; export PYTHONPATH=$PYTHONPATH:$PWD
rm -f $O/done/l64_* $O/done/l1024_* $O/done/prof_*  # a first try without the repo on the path
CB=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,DYNAMIC_SLICE_FUSION,WHILE,CONDITIONAL
DSF=--xla_gpu_enable_dynamic_slice_fusion=true
DB=--xla_gpu_enable_while_loop_double_buffering=true
b() { local name=$1 flags=$2; shift 2; [ -f $O/done/$name ] && return 0; echo "== $name XLA_FLAGS='$flags'" >> $O/bench/$name.log; XLA_FLAGS="$flags" timeout 200 python3 bench/profile_step.py --profile '' "$@" >> $O/bench/$name.log 2>&1; local rc=$?; echo "$name rc=$rc" | tee -a $O/logs/summary.txt; grep -E 'step .* ms' $O/bench/$name.log | sed "s/^/$name /" | tee -a $O/logs/summary.txt; [ $rc = 0 ] && touch $O/done/$name; }
b l1024_default "" --batch 16 --length 1024 --steps 15 --ablations base,rolled,u2
b l1024_dsf "$DSF" --batch 16 --length 1024 --steps 15 --ablations rolled,base
b l1024_cb "$CB" --batch 16 --length 1024 --steps 15 --ablations rolled
b l64_default "" --batch 48 --length 64 --steps 30 --ablations base,rolled
b l64_cb "$CB" --batch 48 --length 64 --steps 30 --ablations rolled
b l1024_cbdsf "$CB $DSF" --batch 16 --length 1024 --steps 15 --ablations rolled
b l64_cbdsf "$CB $DSF" --batch 48 --length 64 --steps 30 --ablations rolled
b l1024_db "$DB" --batch 16 --length 1024 --steps 15 --ablations rolled
b l64_dsf "$DSF" --batch 48 --length 64 --steps 30 --ablations rolled
# where the rolled step's extra time goes (the profiler runs op by op: no command buffers)
[ -f $O/done/prof_rolled ] || { timeout 150 python3 bench/profile_step.py --batch 16 --length 1024 --steps 10 --ablations rolled --profile rolled > $O/bench/prof_rolled.log 2>&1; touch $O/done/prof_rolled; }
[ -f $O/done/prof_rolled64 ] || { timeout 120 python3 bench/profile_step.py --batch 48 --length 64 --steps 10 --ablations rolled,base --profile rolled > $O/bench/prof_rolled64.log 2>&1; touch $O/done/prof_rolled64; }
echo QUEUE DONE | tee -a $O/logs/summary.txt
