#!/usr/bin/env bash
# Lease of 2026-11-30's fourth session: last session's next_n10.sh reordered so that issue 24's
# lambda row (lever 1, never measured on the GPU) comes before issue 25's compile runs, since
# the whole queue (~1,750 s) does not fit 30 minutes of device time. Fired up to three times
# back to back on one warm machine (`QUEUE=bench/results/2026-11-30_h200_session10/calls/next_n11.sh
# LIMIT=530 bash bench/lease/call.sh`, carry .gpu and .whl; no test split is scored here).
# Done markers skip what is done; a run cut by the limit resumes from its checkpoint.
# 1. the 4-epoch export (README's pretraining command);
# 2. issue 24, lever 1: lambda (train.decision_weight) 0.3 and 3 against the base 1.0, seed 0,
#    validation only, on TREC and SST-2 (small_set.py for one seed), then IMDB full (decision.py);
#    trec_base_s0 is also issue 25's cold run at this revision (its own empty cache);
# 3. issue 25: TREC seed 1 warm; compile ahead on with the persistent cache, cold then warm;
#    layer_unroll=4, cold.
set -uo pipefail; source bench/lease/env.sh
r pretrain4 python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain4 "${common[@]}" "${imdb[@]}" || exit 1
rm -rf $O/pretrain4/checkpoints
X=$O/pretrain4/export; export LV_INIT=$X
lv() { bash bench/lease/lever.sh "$@"; [ $? = 255 ] && exit 130; return 0; }
lv trec_base_s0
lv trec_lam03_s0 --config.train.decision_weight=0.3
lv trec_lam3_s0 --config.train.decision_weight=3.0
lv sst2_base_s0
lv sst2_lam03_s0 --config.train.decision_weight=0.3
lv sst2_lam3_s0 --config.train.decision_weight=3.0
for lam in 1.0 0.3 3.0; do
  r imdb_lam$lam python3 run.py --config=configs/decision.py --workdir=$O/imdb_lam$lam "${common[@]}" "${imdb[@]}" --config.model.init=$X --config.eval.splits="('val',)" --config.train.decision_weight=$lam || exit 1
  rm -rf $O/imdb_lam$lam/checkpoints $O/imdb_lam$lam/export
done
lv trec_base_s1
lv trec_ahead_s0 --config.compile_ahead_threads=-1; lv trec_ahead_s1 --config.compile_ahead_threads=-1
lv trec_unroll4_s0 --config.model.layer_unroll=4
echo QUEUE DONE | tee -a $O/logs/summary.txt
