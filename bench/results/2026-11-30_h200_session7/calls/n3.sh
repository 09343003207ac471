#!/usr/bin/env bash
# Session 2026-11-30, calls 2-3 (one warm machine): issue 24's lever 4, the 4-epoch export; IMDB
# full decision.py from it on validation only (the 2-epoch export's val: 93.36), then TREC / SST-2
# small_set.py seeds from it (val only; TREC's 2-epoch base: 89.62 mean of 3). A run cut off by
# the call's limit resumes from its checkpoint in the next call.
set -uo pipefail; source .gpu/env.sh
r pretrain4 python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain4 "${common[@]}" "${imdb[@]}" --config.train.epochs=4 || exit 1
rm -rf $O/pretrain4/checkpoints
r imdb4 python3 run.py --config=configs/decision.py --workdir=$O/imdb4 "${common[@]}" "${imdb[@]}" --config.model.init=$O/pretrain4/export --config.eval.splits="('val',)" || exit 1
for s in trec sst2; do for seed in 0 1 2; do LV_INIT=$O/pretrain4/export bash .gpu/lever.sh ${s}_init4_s$seed; [ $? = 255 ] && exit 130; done; done
echo QUEUE DONE | tee -a $O/logs/summary.txt
