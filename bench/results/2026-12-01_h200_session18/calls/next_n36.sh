#!/usr/bin/env bash
# Session 18, call 7 (issue 25, compile): a rolled loop that keeps only the matmuls' outputs
# (model.remat=dots; under remat the layers run as a loop) was 14% faster than the plain rolled
# loop in the step bench (remat_rolled.log): the cold stall and step rate of each small set
# with it, beside the default on the same machine.
#   QUEUE=bench/results/2026-12-01_h200_session18/calls/next_n36.sh LIMIT=540 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh
export LV_INIT=scratch LVX="--config.model.size=gpt2 --config.train.max_steps=2592 --config.train.min_steps=0 --config.train.early_stop_patience=0"
i500() { local n=$1; shift; r $n python3 run.py --config=configs/decision.py --workdir=$O/$n "${common[@]}" "${imdb[@]}" --config.model.init=scratch --config.model.size=gpt2 --config.seed=0 --config.data.per_class_limit=500 --config.eval.splits="('val',)" --config.train.max_steps=300 --config.train.min_steps=0 --config.train.early_stop_patience=0 --config.compile_cache_dir=/tmp/xla_lv/$n "$@" || exit 1; rm -rf $O/$n/checkpoints $O/$n/export; }
bash bench/lease/lever.sh trec_dots_s0 --config.model.remat=dots; [ $? = 255 ] && exit 130
i500 i500_dots --config.model.remat=dots
bash bench/lease/lever.sh sst2_dots_s0 --config.model.remat=dots; [ $? = 255 ] && exit 130
bash bench/lease/lever.sh trec_u0_s0; [ $? = 255 ] && exit 130
i500 i500_u0
echo QUEUE DONE | tee -a $O/logs/summary.txt
