#!/usr/bin/env bash
# Session 5, call B (same machine): what call A left, TREC with the shipped recipe, IMDB
# 500/class with decision.py and the same three-seed ensemble, then remat's memory (fixed).
set -uo pipefail; source .gpu/env.sh
r pretrain python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain "${common[@]}" "${imdb[@]}" --config.train.epochs=2 || exit 1
rm -rf $O/pretrain/checkpoints
r sst2 python3 run.py --config=configs/small_set.py --workdir=$O/sst2 "${common[@]}" "${sst2[@]}" --config.model.init=$INIT
r trec python3 run.py --config=configs/small_set.py --workdir=$O/trec "${common[@]}" "${trec[@]}" --config.model.init=$INIT
ens=(--config.data.split_seed=0 --config.search.candidates="('seed=1','seed=2')" --config.search.ensemble=3)
r i500 python3 run.py --config=configs/decision.py --workdir=$O/i500 "${common[@]}" "${imdb[@]}" --config.model.init=$INIT --config.data.per_class_limit=500 "${ens[@]}"
r remat python3 bench/bench_train_step.py --sizes gpt2-medium --batch 16 --steps 10 --remat full --variants cudnn --peers '' --lengths 1024 --out $O/logs/remat_full.json
echo QUEUE DONE | tee -a $O/logs/summary.txt
