#!/usr/bin/env bash
# Lease of 2026-12-01, call 3 (issue 25), branch pallas-head with model.scoring_head=auto (the
# kernel on this Hopper GPU). n23's cold-stall runs (gpt2 from scratch, validation only, a
# fresh compile cache each), the validation scorer on XLA's head against the kernel, whose
# program is the cold stall's one late compile (~4.7 s in n23); then bench_score at the default.
#   QUEUE=bench/results/2026-12-01_h200_session17/calls/next_n30.sh LIMIT=540 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh
mkdir -p $O/bench
b() { local n=$1; shift; [ -f $O/bench/$n.log ] && return 0; env PYTHONPATH=/tmp/site:$PWD "$@" > $O/bench/$n.part 2>&1; mv $O/bench/$n.part $O/bench/$n.log; }
i500() { local n=$1; shift; r $n python3 run.py --config=configs/decision.py --workdir=$O/$n "${common[@]}" "${imdb[@]}" --config.model.init=scratch --config.model.size=gpt2 --config.seed=0 --config.data.per_class_limit=500 --config.eval.splits="('val',)" --config.train.max_steps=300 --config.train.min_steps=0 --config.train.early_stop_patience=0 --config.compile_cache_dir=/tmp/xla_lv/$n "$@" || exit 1; rm -rf $O/$n/checkpoints $O/$n/export; }
export LV_INIT=scratch LVX="--config.model.size=gpt2 --config.train.max_steps=2592 --config.train.min_steps=0 --config.train.early_stop_patience=0"
bash bench/lease/lever.sh trec_xlahead_s0 --config.model.scoring_head=xla; [ $? = 255 ] && exit 130
bash bench/lease/lever.sh trec_autohead_s0; [ $? = 255 ] && exit 130
i500 i500_xlahead --config.model.scoring_head=xla
i500 i500_autohead
b score_auto timeout 150 python3 bench/bench_score.py --data $D --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16 --peer-precisions ''; tr '\r' '\n' < $O/bench/score_auto.log | grep -a "^ours label\|Error" | sed "s/^/auto: /"
echo QUEUE DONE | tee -a $O/logs/summary.txt
