#!/usr/bin/env bash
# Lease of 2026-11-30's seventh session, call 3 (issue 25), after n18 found XLA without
# --xla_gpu_enable_llvm_module_compilation_parallelism (jaxlib 0.11.2: "Unknown flag"):
#   QUEUE=bench/results/2026-11-30_h200_session14/calls/next_n19.sh LIMIT=330 bash bench/lease/call.sh
# 1. the compile-parallelism flags this XLA knows (strings of its GPU plugin) and the step's cold
#    compile with --xla_gpu_force_compilation_parallelism=16 (n18 default: 13.5 s);
# 2. IMDB 500/class decision.py from scratch, cold, 300 updates, validation only: eval.pack_texts
#    16 against 0 (validation in one shape instead of three): the late compiles.
set -uo pipefail; source bench/lease/env.sh
mkdir -p $O/bench
for so in $(python3 -c "import glob, os, jax_plugins, jaxlib; print(' '.join(glob.glob(os.path.join(os.path.dirname(jaxlib.__file__), '*.so')) + glob.glob(os.path.join(list(jax_plugins.__path__)[0], '*', '*.so'))))" 2>/dev/null); do strings $so | grep -oE "xla_gpu_[a-z_]*(parallel|thread)[a-z_]*" ; done | sort -u > $O/bench/flag_names.log; cat $O/bench/flag_names.log
PAR="--xla_gpu_force_compilation_parallelism=16"
XLA_FLAGS="$PAR" python3 -c "import jax, jax.numpy as jnp; print(jax.jit(lambda x: x + 1)(jnp.ones(3)))" > $O/bench/flags2.log 2>&1 && PAR_OK=1 || PAR_OK=0; tail -1 $O/bench/flags2.log; echo PAR_OK=$PAR_OK
[ $PAR_OK = 1 ] && { [ -f $O/bench/compile_par16.log ] || XLA_FLAGS="$PAR" PYTHONPATH=/tmp/site:$PWD timeout 150 python3 bench/bench_train_step.py --lengths 1024 --batch 16 --steps 5 --repeats 1 --variants cudnn+packed --peers '' > $O/bench/compile_par16.log 2>&1; grep "^ours" $O/bench/compile_par16.log; }
for p in 16 0; do
  r i500_pack$p python3 run.py --config=configs/decision.py --workdir=$O/i500_pack$p "${common[@]}" "${imdb[@]}" --config.model.init=scratch --config.model.size=gpt2 --config.seed=0 --config.data.per_class_limit=500 --config.eval.splits="('val',)" --config.train.max_steps=300 --config.train.min_steps=0 --config.train.early_stop_patience=0 --config.eval.pack_texts=$p --config.compile_cache_dir=/tmp/xla_lv/i500_pack$p || exit 1
  rm -rf $O/i500_pack$p/checkpoints $O/i500_pack$p/export
done
echo QUEUE DONE | tee -a $O/logs/summary.txt
