#!/usr/bin/env bash
# The second call of 2026-11-30's ninth lease, issue 25 (n24's queue done): XLA's autotuning level
# against the cold stall, and the 2-epoch pretraining uninterrupted. Carry .gpu and .whl.
#   QUEUE=bench/results/2026-11-30_h200_session16/calls/next_n25.sh LIMIT=540 bash bench/lease/call.sh
# n24: TREC from scratch with --xla_gpu_autotune_level=1 stalled 20.7 s (16.4 + 4.3) against 25.8
# at the default level 4, at the same 147.9 steps/s. Here:
# 1. n23's IMDB 500/class run (25.6 s stall, fresh compile cache) at level 1: a second set's stall;
# 2. the step bench (T = 1,024, batch 16, recipe numerics) at levels 4, 1 and 0 in one call: its
#    compile seconds and tokens/s (the big shapes are where a kernel choice could lose speed);
# 3. the 2-epoch pretraining uninterrupted (n24's was cut by the call limit at step 912 and
#    resumed): its train phase against n22's 117.8 s;
# 4. level 0 (no autotuning, XLA's heuristic kernels) on TREC and IMDB 500/class;
# 5. test scoring at level 1 against n24's 16.28 s cold / 11.49 s warm at the default.
set -uo pipefail; source bench/lease/env.sh
mkdir -p $O/bench
b() { local n=$1; shift; [ -f $O/bench/$n.log ] && return 0; env PYTHONPATH=/tmp/site:$PWD "$@" > $O/bench/$n.part 2>&1; mv $O/bench/$n.part $O/bench/$n.log; }
i500() { local n=$1; shift; r $n env "$@" python3 run.py --config=configs/decision.py --workdir=$O/$n "${common[@]}" "${imdb[@]}" --config.model.init=scratch --config.model.size=gpt2 --config.seed=0 --config.data.per_class_limit=500 --config.eval.splits="('val',)" --config.train.max_steps=300 --config.train.min_steps=0 --config.train.early_stop_patience=0 --config.compile_cache_dir=/tmp/xla_lv/$n || exit 1; rm -rf $O/$n/checkpoints $O/$n/export; }
i500 i500_at1 XLA_FLAGS=--xla_gpu_autotune_level=1
for lv in 4 1 0; do
  XLA_FLAGS=--xla_gpu_autotune_level=$lv b step_at$lv timeout 150 python3 bench/bench_train_step.py --lengths 1024 --batch 16 --steps 20 --repeats 3 --variants cudnn+packed --dropout 0.1 --prng hash --peers ''; grep -a "^ours" $O/bench/step_at$lv.log | sed "s/^/level $lv: /"
done
r pretrain2_whole python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain2_whole "${common[@]}" "${imdb[@]}" --config.train.epochs=2 || exit 1
rm -rf $O/pretrain2_whole/checkpoints $O/pretrain2_whole/export
export LV_INIT=scratch LVX="--config.model.size=gpt2 --config.train.max_steps=2592 --config.train.min_steps=0 --config.train.early_stop_patience=0"
XLA_FLAGS=--xla_gpu_autotune_level=0 bash bench/lease/lever.sh trec_at0_s0; [ $? = 255 ] && exit 130
i500 i500_at0 XLA_FLAGS=--xla_gpu_autotune_level=0
XLA_FLAGS=--xla_gpu_autotune_level=1 b score_at1 timeout 120 python3 bench/bench_score.py --data $D --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16 --peer-precisions ''; tr '\r' '\n' < $O/bench/score_at1.log | grep -a "^ours label" | sed "s/^/level 1: /"
echo QUEUE DONE | tee -a $O/logs/summary.txt
