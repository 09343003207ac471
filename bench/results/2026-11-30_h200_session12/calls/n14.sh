#!/usr/bin/env bash
# Lease of 2026-11-30's sixth session, call 2 (issue 25), after next_n13.sh:
#   QUEUE=bench/results/2026-11-30_h200_session12/calls/n14.sh LIMIT=530 bash bench/lease/call.sh
# (carry .gpu and .whl). 0. cuDNN's offsets path again (call 1 found it equal, then its vmap
# check stopped the timing); 1. full IMDB, decision.py, bucket rows against packed rows: the
# step rate and the compile stall at 1,500 updates from scratch (validation only, each its own
# empty compile cache); 2. the step bench at T=256, right-padded against packed.
set -uo pipefail; source bench/lease/env.sh
mkdir -p $O/bench; [ -f $O/bench/cudnn_packed2.log ] || PYTHONPATH=/tmp/site:$PWD timeout 150 python3 bench/check_cudnn_packed.py > $O/bench/cudnn_packed2.log 2>&1; tail -12 $O/bench/cudnn_packed2.log
for b in bucket pack; do
  r ifull_$b python3 run.py --config=configs/decision.py --workdir=$O/ifull_$b "${common[@]}" "${imdb[@]}" --config.model.init=scratch --config.model.size=gpt2 --config.seed=0 --config.data.split_seed=0 --config.eval.splits="('val',)" --config.data.batching=$b --config.train.max_steps=1500 --config.train.min_steps=0 --config.train.early_stop_patience=0 --config.compile_cache_dir=/tmp/xla_lv/ifull_$b || exit 1
  rm -rf $O/ifull_$b/checkpoints $O/ifull_$b/export
done
PYTHONPATH=/tmp/site:$PWD python3 bench/bench_train_step.py --lengths 256 --batch 64 --steps 20 --variants cudnn,cudnn+packed --peers '' --device-time-budget 150 > $O/bench/packed256.log 2>&1; tail -6 $O/bench/packed256.log
echo QUEUE DONE | tee -a $O/logs/summary.txt
