#!/usr/bin/env bash
# Lease of 2026-11-30 (second session), one queue fired up to three times back to back on one
# warm machine (done markers skip what is done; a run cut by the limit resumes from its checkpoint).
# 1. the 4-epoch export; 2. IMDB full decision.py from it, val + test (the recipe shipped), beside
#    (same GPU) the moving average (train.ema_decay=0.998) on TREC / SST-2 seeds 0-2, val only;
# 3. IMDB 500/class decision.py seeds 0-2 (val + test); 4. base seeds on the same export (the
#    last lease's base came from another 4-epoch export); 5. issue 27's one-GPU rows.
set -uo pipefail; source .gpu/env.sh
r pretrain4 python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain4 "${common[@]}" "${imdb[@]}" --config.train.epochs=4 || exit 1
rm -rf $O/pretrain4/checkpoints
export LV_INIT=$O/pretrain4/export
( XLA_PYTHON_CLIENT_MEM_FRACTION=0.6 r imdb4_test python3 run.py --config=configs/decision.py --workdir=$O/imdb4_test "${common[@]}" "${imdb[@]}" --config.model.init=$O/pretrain4/export ) &
bg=$!
for seed in 0 1 2; do for s in trec sst2; do
  bash .gpu/lever.sh ${s}_ema998_s$seed --config.train.ema_decay=0.998; [ $? = 255 ] && { wait $bg; exit 130; }
done; done
wait $bg; [ -f $O/done/imdb4_test ] || exit 130
for s in 0 1 2; do
  r i500_s$s python3 run.py --config=configs/decision.py --workdir=$O/i500_s$s "${common[@]}" "${imdb[@]}" --config.model.init=$O/pretrain4/export --config.data.per_class_limit=500 --config.seed=$s --config.data.split_seed=0 || exit 1
  rm -rf $O/i500_s$s/checkpoints
done
for seed in 0 1 2; do for s in trec sst2; do
  bash .gpu/lever.sh ${s}_base_s$seed; [ $? = 255 ] && exit 130
done; done
r i27_large_full python3 bench/bench_train_step.py --sizes gpt2-large --batch 16 --steps 10 --remat full --variants cudnn --peers compile --lengths 1024 --device-time-budget 200 --out $O/logs/i27_large_full.json
r i27_maxbatch python3 bench/bench_train_step.py --sizes gpt2-medium,gpt2-large --batch 16 --steps 5 --remat none --variants cudnn --peers compile --lengths 1024 --max-batch --search-budget 60 --device-time-budget 200 --out $O/logs/i27_maxbatch.json
echo QUEUE DONE | tee -a $O/logs/summary.txt
