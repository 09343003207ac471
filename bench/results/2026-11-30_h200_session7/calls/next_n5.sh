#!/usr/bin/env bash
# Next lease (planned 2026-11-30), one queue fired up to three times back to back on one warm
# machine (done markers skip what is done; a run cut by the limit resumes from its checkpoint).
# By priority: issue 24's lever 2/3 `train.ema_decay` against base seeds from the same 4-epoch
# export (TREC, SST-2, validation only), IMDB full with the average on validation, then issue
# 27's two one-GPU rows (ours first now).
set -uo pipefail; source .gpu/env.sh
r pretrain4 python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain4 "${common[@]}" "${imdb[@]}" --config.train.epochs=4 || exit 1
rm -rf $O/pretrain4/checkpoints
export LV_INIT=$O/pretrain4/export
for s in trec sst2; do for seed in 0 1 2; do
  bash .gpu/lever.sh ${s}_base_s$seed; [ $? = 255 ] && exit 130
  bash .gpu/lever.sh ${s}_ema998_s$seed --config.train.ema_decay=0.998; [ $? = 255 ] && exit 130
done; done
r imdb4_ema python3 run.py --config=configs/decision.py --workdir=$O/imdb4_ema "${common[@]}" "${imdb[@]}" --config.model.init=$O/pretrain4/export --config.eval.splits="('val',)" --config.train.ema_decay=0.999 || exit 1
r i27_large_full python3 bench/bench_train_step.py --sizes gpt2-large --batch 16 --steps 10 --remat full --variants cudnn --peers compile --lengths 1024 --device-time-budget 200 --out $O/logs/i27_large_full.json
r i27_maxbatch python3 bench/bench_train_step.py --sizes gpt2-medium,gpt2-large --batch 16 --steps 5 --remat none --variants cudnn --peers compile --lengths 1024 --max-batch --search-budget 60 --device-time-budget 200 --out $O/logs/i27_maxbatch.json
# issue 25, compile: TREC seed 0 with a fresh compile cache each: layers unrolled (the default)
# vs one layer per scan iteration (model.layer_unroll=1), and compile ahead with no persistent cache
bash .gpu/lever.sh trec_cold0_s0; [ $? = 255 ] && exit 130
bash .gpu/lever.sh trec_unroll1_s0 --config.model.layer_unroll=1; [ $? = 255 ] && exit 130
bash .gpu/lever.sh trec_aheadnocache_s0 --config.compile_cache_dir= --config.compile_ahead_threads=-1; [ $? = 255 ] && exit 130
echo QUEUE DONE | tee -a $O/logs/summary.txt
