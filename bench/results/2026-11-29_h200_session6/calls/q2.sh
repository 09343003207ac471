#!/usr/bin/env bash
# Session 6, call 2 (same machine): 8 runs at once on one GPU ran no faster in sum than one
# (IMDB 57 -> 7 steps/s, TREC ~70 -> 12): IMDB full alone first, then the levers two at a time.
set -uo pipefail; source .gpu/env.sh
r pretrain python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain "${common[@]}" "${imdb[@]}" --config.train.epochs=2 || exit 1
rm -rf $O/pretrain/checkpoints
( r imdb python3 run.py --config=configs/decision.py --workdir=$O/imdb "${common[@]}" "${imdb[@]}" --config.model.init=$INIT && { [ -f $O/collect/imdb/metrics.json ] || collect imdb; } ) || exit 1
xargs -P ${POOL:-2} -L 1 bash .gpu/lever.sh < .gpu/levers.txt
echo QUEUE DONE | tee -a $O/logs/summary.txt
