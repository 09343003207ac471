#!/usr/bin/env bash
# Next lease (planned 2026-11-30, third session): one queue fired up to three times back to back
# on one warm machine (`QUEUE=bench/results/2026-11-30_h200_session9/calls/next_n10.sh LIMIT=530
# bash bench/lease/call.sh`, carry .gpu and .whl; no IMDB test is scored here). Done markers skip what is done; a run cut by the limit resumes.
# 1. the 4-epoch export (README's pretraining command);
# 2. issue 25: TREC small_set.py seed 0 cold (its own cache) then seed 1 warm, at the revision
#    that reads validation's LM loss from the scores (3 programs fewer); layer_unroll=4
#    (1 halved the cold compile and cost ~27% of an epoch: 3 loop iterations between the two),
#    cold; compile ahead on (`compile_ahead_threads=-1`, command buffers off, the persistent
#    cache on) cold then warm: its first cold failures came with the cache on, its one pass
#    without the cache (last lease: 22.4 s stall) proves nothing of that;
# 3. issue 24, lever 1 (never measured on the GPU): lambda (train.decision_weight) 0.3 and 3
#    against the base 1.0 on TREC and SST-2 (seed 0, validation only), then IMDB full
#    (decision.py, validation only: base, 0.3, 3).
set -uo pipefail; source bench/lease/env.sh
r pretrain4 python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain4 "${common[@]}" "${imdb[@]}" || exit 1
rm -rf $O/pretrain4/checkpoints
X=$O/pretrain4/export; export LV_INIT=$X
lv() { bash bench/lease/lever.sh "$@"; [ $? = 255 ] && exit 130; return 0; }
lv trec_base_s0; lv trec_base_s1
lv trec_unroll4_s0 --config.model.layer_unroll=4
lv trec_ahead_s0 --config.compile_ahead_threads=-1; lv trec_ahead_s1 --config.compile_ahead_threads=-1
lv trec_lam03_s0 --config.train.decision_weight=0.3
lv trec_lam3_s0 --config.train.decision_weight=3.0
lv sst2_base_s0
lv sst2_lam03_s0 --config.train.decision_weight=0.3
lv sst2_lam3_s0 --config.train.decision_weight=3.0
for lam in 1.0 0.3 3.0; do
  r imdb_lam$lam python3 run.py --config=configs/decision.py --workdir=$O/imdb_lam$lam "${common[@]}" "${imdb[@]}" --config.model.init=$X --config.eval.splits="('val',)" --config.train.decision_weight=$lam || exit 1
  rm -rf $O/imdb_lam$lam/checkpoints $O/imdb_lam$lam/export
done
echo QUEUE DONE | tee -a $O/logs/summary.txt
