#!/usr/bin/env bash
# Next lease (planned 2026-11-30 after its seventh lease), issue 25. Fire up to three times back
# to back on one warm machine, carry .gpu and .whl (.gpu/onepass: `git archive onepass-lse`
# of gencls_jax, configs, bench/*.py, bench/lease, run.py, pyproject.toml; the tree checked out
# is main):
#   QUEUE=bench/results/2026-12-01_h200_session15/calls/next_n21.sh LIMIT=530 bash bench/lease/call.sh
# Done markers skip what is done; a run cut by the limit resumes from its checkpoint.
# 1. the 4-epoch export (README's pretraining command): its model phase with the cheap init
#    program (n17: 17.6 s, compile 15.1 s);
# 2. hashed dropout masks' accuracy (a numeric change): decision.py on full IMDB from it with
#    model.dropout_masks=hash, seeds 0 and 1, test scored, against 93.52 / 93.59% with
#    bernoulli masks (n17); its steps/s against 67.1 and its cold stall against 29.9 s;
# 3. the one-read logsumexp (branch onepass-lse, unmeasured): before_after.sh, the step (the
#    recipe's dropout, packed rows) and label_prefix test scoring, packed (old = onepass,
#    new = main);
# 4. the 2-epoch pretraining with hashed masks: train phase against 90 s.
set -uo pipefail; source bench/lease/env.sh
r pretrain4 python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain4 "${common[@]}" "${imdb[@]}" || exit 1
rm -rf $O/pretrain4/checkpoints
X=$O/pretrain4/export
for s in 0 1; do
  r imdb_hash_s$s python3 run.py --config=configs/decision.py --workdir=$O/imdb_hash_s$s "${common[@]}" "${imdb[@]}" --config.model.init=$X --config.seed=$s --config.model.dropout_masks=hash || exit 1
  rm -rf $O/imdb_hash_s$s/checkpoints $O/imdb_hash_s$s/export
done
mkdir -p $O/bench
[ -f $O/bench/onepass.log ] || STEP_ARGS="--variants cudnn+packed --dropout 0.1 --prng hash --steps 20" SCORE_ARGS="--ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16" PYTHONPATH=/tmp/site timeout 400 bash bench/before_after.sh .gpu/onepass $D 2 both > $O/bench/onepass.log 2>&1; tail -6 $O/bench/onepass.log
r pretrain2_hash python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain2_hash "${common[@]}" "${imdb[@]}" --config.train.epochs=2 --config.model.dropout_masks=hash || exit 1
rm -rf $O/pretrain2_hash/checkpoints $O/pretrain2_hash/export
echo QUEUE DONE | tee -a $O/logs/summary.txt
