#!/usr/bin/env bash
# Next lease, calls 2-3 (one warm machine): the export, then issue 24's lever 3 on SST-2 one run at
# a time (LVX: extra flags for every lever run, e.g. --config.train.steps_per_call=16 if call 1
# says it pays), TREC base again (this export), then lever 4's 4-epoch export and TREC / SST-2 base seeds from it.
set -uo pipefail; source .gpu/env.sh
r pretrain python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain "${common[@]}" "${imdb[@]}" --config.train.epochs=2 || exit 1
rm -rf $O/pretrain/checkpoints
grep -E "^(trec_base_|sst2_)" .gpu/levers.txt | xargs -P 1 -L 1 bash .gpu/lever.sh
r pretrain4 python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain4 "${common[@]}" "${imdb[@]}" --config.train.epochs=4 || exit 1
rm -rf $O/pretrain4/checkpoints
for s in trec sst2; do for seed in 0 1 2; do LV_INIT=$O/pretrain4/export bash .gpu/lever.sh ${s}_init4_s$seed || true; done; done
echo QUEUE DONE | tee -a $O/logs/summary.txt
