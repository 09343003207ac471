#!/usr/bin/env bash
# Lease of 2026-11-30's seventh session, call 2 (issue 25), after n17 (next_n17.sh, session13):
#   QUEUE=bench/results/2026-11-30_h200_session14/calls/next_n18.sh LIMIT=600 bash bench/lease/call.sh
# 1. XLA's parallel LLVM compilation (off by default in XLA): the step's cold compile with it
#    and without (bench_train_step's `compile s`, packed rows at T = 1,024, no cache);
# 2. packed test scoring on the GPU against one text per row, same process (label_prefix,
#    offsets kernel at T = 1,024): the equality check before eval.pack_texts becomes a default;
# 3. TREC small_set.py from scratch, cold, 2,592 updates, validation only: eval.pack_texts 0 vs
#    16 (one validation shape instead of three) and 16 + parallel compilation: the stall.
set -uo pipefail; source bench/lease/env.sh
export LV_INIT=scratch LVX="--config.model.size=gpt2 --config.train.max_steps=2592 --config.train.min_steps=0 --config.train.early_stop_patience=0"
lv() { bash bench/lease/lever.sh "$@"; [ $? = 255 ] && exit 130; return 0; }
PAR="--xla_gpu_enable_llvm_module_compilation_parallelism=true --xla_gpu_force_compilation_parallelism=16"
mkdir -p $O/bench
XLA_FLAGS="$PAR" python3 -c "import jax, jax.numpy as jnp; print(jax.jit(lambda x: x + 1)(jnp.ones(3)))" > $O/bench/flags.log 2>&1 && PAR_OK=1 || PAR_OK=0
tail -2 $O/bench/flags.log; echo "PAR_OK=$PAR_OK"
for v in default par; do
  [ $v = par ] && [ $PAR_OK = 0 ] && continue
  [ -f $O/bench/compile_$v.log ] || ( [ $v = par ] && export XLA_FLAGS="$PAR"; PYTHONPATH=/tmp/site:$PWD timeout 150 python3 bench/bench_train_step.py --lengths 1024 --batch 16 --steps 5 --repeats 1 --variants cudnn+packed --peers '' > $O/bench/compile_$v.log 2>&1 ); grep "^ours" $O/bench/compile_$v.log
done
[ -f $O/bench/score_check.log ] || PYTHONPATH=/tmp/site:$PWD timeout 200 python3 bench/bench_score.py --data $D --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16 --check-unpacked --limit 4000 --peer-precisions '' > $O/bench/score_check.log 2>&1; tr '\r' '\n' < $O/bench/score_check.log | grep -E "^ours label|^packed vs"
lv trec_pack16_s0 --config.eval.pack_texts=16
lv trec_pack0_s0 --config.eval.pack_texts=0
[ $PAR_OK = 1 ] && XLA_FLAGS="$PAR" lv trec_pack16par_s0 --config.eval.pack_texts=16
echo QUEUE DONE | tee -a $O/logs/summary.txt
