#!/usr/bin/env bash
# Leftover device time of the lease of 2026-11-30 (third session), same warm machine after
# next_n7.sh: warm-cache stalls at d3ec0d2 (after the run-values change): IMDB 500/class
# decision.py (val only; its shapes were compiled by imdb4_ema) and SST-2 small_set.py seed 5
# (one candidate, val only; its shapes compiled by sst2_ship).
set -uo pipefail; source bench/lease/env.sh
X=$O/pretrain4/export
r i500w_s3 python3 run.py --config=configs/decision.py --workdir=$O/i500w_s3 "${common[@]}" "${imdb[@]}" --config.model.init=$X --config.data.per_class_limit=500 --config.seed=3 --config.data.split_seed=0 --config.eval.splits="('val',)" || exit 1
r sst2w_s5 python3 run.py --config=configs/small_set.py --workdir=$O/sst2w_s5 "${common[@]}" "${sst2[@]}" --config.model.init=$X --config.seed=5 --config.search.candidates="()" --config.search.ensemble=1 --config.eval.splits="('val',)" || exit 1
echo QUEUE DONE | tee -a $O/logs/summary.txt
