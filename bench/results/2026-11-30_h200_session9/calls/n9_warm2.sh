#!/usr/bin/env bash
# Same machine after n9_warm.sh: IMDB 500/class decision.py seed 4 (val only), now that seed 3
# compiled its own shapes: the warm stall of a rerun with another seed.
set -uo pipefail; source bench/lease/env.sh
X=$O/pretrain4/export
r i500w_s4 python3 run.py --config=configs/decision.py --workdir=$O/i500w_s4 "${common[@]}" "${imdb[@]}" --config.model.init=$X --config.data.per_class_limit=500 --config.seed=4 --config.data.split_seed=0 --config.eval.splits="('val',)" || exit 1
echo QUEUE DONE | tee -a $O/logs/summary.txt
