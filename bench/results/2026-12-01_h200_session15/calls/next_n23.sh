#!/usr/bin/env bash
# The lease's last ~5 minutes (issue 25), at fadc969 (hashed dropout masks the default, the
# one-read logsumexp merged): the cold stall of n18's TREC run and n19's IMDB 500/class run
# (gpt2 from scratch, validation only, packed validation, a fresh compile cache each), against
# 25.6 s and 26.7 s there.
#   QUEUE=bench/results/2026-12-01_h200_session15/calls/next_n23.sh LIMIT=200 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh
export LV_INIT=scratch LVX="--config.model.size=gpt2 --config.train.max_steps=2592 --config.train.min_steps=0 --config.train.early_stop_patience=0"
bash bench/lease/lever.sh trec_hash_s0; [ $? = 255 ] && exit 130
r i500_hash python3 run.py --config=configs/decision.py --workdir=$O/i500_hash "${common[@]}" "${imdb[@]}" --config.model.init=scratch --config.model.size=gpt2 --config.seed=0 --config.data.per_class_limit=500 --config.eval.splits="('val',)" --config.train.max_steps=300 --config.train.min_steps=0 --config.train.early_stop_patience=0 --config.compile_cache_dir=/tmp/xla_lv/i500_hash || exit 1
rm -rf $O/i500_hash/checkpoints $O/i500_hash/export
echo QUEUE DONE | tee -a $O/logs/summary.txt
