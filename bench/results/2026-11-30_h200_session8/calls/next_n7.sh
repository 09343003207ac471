#!/usr/bin/env bash
# Next lease (planned 2026-11-30, second session): one queue fired up to three times back to
# back on one warm machine (`QUEUE=bench/results/2026-11-30_h200_session8/calls/next_n7.sh LIMIT=530
# bash bench/lease/call.sh`, carry .gpu and .whl;
# done markers skip what is done; a run cut by the limit resumes from its checkpoint).
# 1. the 4-epoch export (README's pretraining command now);
# 2. issue 24: the shipped small_set.py command (3 seeds, their ensemble, the moving average on)
#    on TREC and SST-2, validation and test, scored once;
# 3. issue 25: a TREC run on other texts (per_class_limit) after it: the train step from the
#    persistent cache (first_step_s), and layer_unroll=1 / compile ahead without the cache /
#    a 32-token bucket (TREC rows fill 27% of their slots), cold;
# 4. issue 24: IMDB full with the moving average (0.999), validation only;
set -uo pipefail; source bench/lease/env.sh
r pretrain4 python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain4 "${common[@]}" "${imdb[@]}" || exit 1
rm -rf $O/pretrain4/checkpoints
X=$O/pretrain4/export
r trec_ship python3 run.py --config=configs/small_set.py --workdir=$O/trec_ship "${common[@]}" "${trec[@]}" --config.model.init=$X || exit 1
r sst2_ship python3 run.py --config=configs/small_set.py --workdir=$O/sst2_ship "${common[@]}" "${sst2[@]}" --config.model.init=$X || exit 1
r trec_other python3 run.py --config=configs/small_set.py --workdir=$O/trec_other "${common[@]}" "${trec[@]}" --config.model.init=$X --config.data.per_class_limit=300 --config.search.candidates="()" --config.search.ensemble=1 --config.eval.splits="('val',)" || exit 1
export LV_INIT=$X
bash bench/lease/lever.sh trec_unroll1_s0 --config.model.layer_unroll=1; [ $? = 255 ] && exit 130
bash bench/lease/lever.sh trec_aheadnocache_s0 --config.compile_cache_dir= --config.compile_ahead_threads=-1; [ $? = 255 ] && exit 130
bash bench/lease/lever.sh trec_b32_s0 --config.data.bucket_lengths="(32,64,128,256)"; [ $? = 255 ] && exit 130
r imdb4_ema python3 run.py --config=configs/decision.py --workdir=$O/imdb4_ema "${common[@]}" "${imdb[@]}" --config.model.init=$X --config.eval.splits="('val',)" --config.train.ema_decay=0.999 || exit 1
echo QUEUE DONE | tee -a $O/logs/summary.txt
