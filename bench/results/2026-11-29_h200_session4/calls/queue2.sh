#!/usr/bin/env bash
# Session 4, last call on a fresh machine: compile ahead OFF everywhere (the cuDNN capture
# failure seen at the first step of cold runs with it on): pretrain, ABBR add_class, the
# failed seeds 0 of SST-2 and IMDB 500/class.
set -uo pipefail; source .gpu/env.sh
[ -f $O/logs/gpu.txt ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $O/logs/gpu.txt
r pretrain python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain "${common[@]}" "${imdb[@]}" --config.train.epochs=2 || exit 1
rm -rf $O/pretrain/checkpoints
if [ ! -f $O/done/abbr ]; then mkdir -p $O/addclass/logs; [ -d $O/addclass/all6 ] || cp -r .gpu/all6_prev $O/addclass/all6; cp .gpu/all6_prev/all6.wall $O/addclass/logs/; EXTRA="--config.compile_ahead_threads=0 --config.train.keep_checkpoints=1" XS=ABBR bash bench/add_class_trec.sh $D $O/addclass $INIT && grep -q "^| ABBR | [0-9]" $O/addclass/summary.txt && touch $O/done/abbr; cat $O/addclass/summary.txt; fi
r sst2_s0 python3 run.py --config=configs/small_set.py --workdir=$O/sst2_s0 "${common[@]}" "${sst2[@]}" --config.model.init=$INIT --config.seed=0
r i500_s0 python3 run.py --config=configs/decision.py --workdir=$O/i500_s0 "${common[@]}" "${imdb[@]}" --config.model.init=$INIT --config.data.per_class_limit=500 --config.seed=0 --config.data.split_seed=0
echo QUEUE DONE | tee -a $O/logs/summary.txt
