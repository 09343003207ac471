#!/usr/bin/env bash
# Session 4 (2026-11-29): one queue for the whole lease; each call runs it under a time limit
# and what is done stays done (markers in $O/done). Issues 26, 24, 25 in that order.
set -uo pipefail; source .gpu/env.sh
[ -f $O/logs/gpu.txt ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $O/logs/gpu.txt
r pretrain python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain "${common[@]}" "${imdb[@]}" --config.train.epochs=2 || exit 1
rm -rf $O/pretrain/checkpoints
ss=(--config.data.split_seed=0)
# TREC: the recipe, three seeds on one validation split; the ensemble; the TREC model vs foreign text
for s in 0 1 2; do r trec_s$s python3 run.py --config=configs/small_set.py --workdir=$O/trec_s$s "${common[@]}" "${trec[@]}" --config.model.init=$INIT --config.seed=$s "${ss[@]}"; [ $s = 0 ] && r ood_trec python3 bench/ood.py --workdir=$O/trec_s0 --data=$D --out=$O/logs/ood_trec.json; done
r trec_ens python3 run.py --mode=eval --workdirs=$O/trec_s0,$O/trec_s1,$O/trec_s2 --workdir=$O/trec_ens
[ -f $O/done/trec_ens ] && rm -rf $O/trec_s?/checkpoints
# issue 26: ABBR held out and added (all6 from the previous lease, copied in)
if [ ! -f $O/done/abbr ]; then mkdir -p $O/addclass/logs; [ -d $O/addclass/all6 ] || cp -r .gpu/all6_prev $O/addclass/all6; cp .gpu/all6_prev/all6.wall $O/addclass/logs/; XS=ABBR bash bench/add_class_trec.sh $D $O/addclass $INIT && grep -q "^| ABBR | [0-9]" $O/addclass/summary.txt && touch $O/done/abbr; cat $O/addclass/summary.txt; fi
# issue 24: SST-2 and IMDB 500/class, three seeds each, ensembles
for s in 0 1 2; do r sst2_s$s python3 run.py --config=configs/small_set.py --workdir=$O/sst2_s$s "${common[@]}" "${sst2[@]}" --config.model.init=$INIT --config.seed=$s; done
r sst2_ens python3 run.py --mode=eval --workdirs=$O/sst2_s0,$O/sst2_s1,$O/sst2_s2 --workdir=$O/sst2_ens
[ -f $O/done/sst2_ens ] && rm -rf $O/sst2_s?/checkpoints
for s in 0 1 2; do r i500_s$s python3 run.py --config=configs/decision.py --workdir=$O/i500_s$s "${common[@]}" "${imdb[@]}" --config.model.init=$INIT --config.data.per_class_limit=500 --config.seed=$s "${ss[@]}"; done
r i500_ens python3 run.py --mode=eval --workdirs=$O/i500_s0,$O/i500_s1,$O/i500_s2 --workdir=$O/i500_ens
[ -f $O/done/i500_ens ] && rm -rf $O/i500_s?/checkpoints
# issue 25: several steps per call (TREC shapes, the recipe's)
r spc python3 bench/steps_per_call.py --config=configs/small_set.py --per-call=1,4,16 --tmp=$O/spc --out=$O/logs/spc.json -- --config.data.source=jsonl --config.data.tokenizer=$D/gpt2-tokenizer --config.data.cache_dir=/tmp/gencls_cache --config.progress_bars=False --config.compile_ahead_threads=1 "${trec[@]}" --config.model.init=$INIT
echo QUEUE DONE | tee -a $O/logs/summary.txt
