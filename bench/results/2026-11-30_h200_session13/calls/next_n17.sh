#!/usr/bin/env bash
# Next lease (planned 2026-11-30 after its sixth lease), issue 25. Fire up to three times back
# to back on one warm machine, carry .gpu and .whl:
#   QUEUE=bench/results/2026-11-30_h200_session13/calls/next_n17.sh LIMIT=530 bash bench/lease/call.sh
# Done markers skip what is done; a run cut by the limit resumes from its checkpoint.
# 1. the 4-epoch export (README's pretraining command): its train phase is LM packing through
#    cuDNN's offsets kernel now (data.pack_texts=16; 281.1 s at 99deafc with the mask);
# 2. the shipped decision.py (packed rows, folded class slices, offsets kernel) on full IMDB from
#    it, seeds 0 and 1, test scored: against 93.48% (test) / 93.60 (val) of the bucketed recipe
#    from a 4-epoch export, and its data + train phases against 100 s;
# 3. test scoring, packed rows against right-padded, warm and cold (targets 8 / 25 s);
# 4. the step bench's packed rows with data.pack_texts=16 (n15: 1.02 with M = 4), T = 256 too.
set -uo pipefail; source bench/lease/env.sh
r pretrain4 python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain4 "${common[@]}" "${imdb[@]}" || exit 1
rm -rf $O/pretrain4/checkpoints
X=$O/pretrain4/export
for s in 0 1; do
  r imdb_s$s python3 run.py --config=configs/decision.py --workdir=$O/imdb_s$s "${common[@]}" "${imdb[@]}" --config.model.init=$X --config.seed=$s || exit 1
  rm -rf $O/imdb_s$s/checkpoints $O/imdb_s$s/export
done
mkdir -p $O/bench
for p in 16 0; do
  [ -f $O/bench/score_pack$p.log ] || PYTHONPATH=/tmp/site:$PWD python3 bench/bench_score.py --data $D --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts $p --peer-precisions '' > $O/bench/score_pack$p.log 2>&1; tail -6 $O/bench/score_pack$p.log
done
[ -f $O/bench/packed4.log ] || PYTHONPATH=/tmp/site:$PWD python3 bench/bench_train_step.py --lengths 1024,256 --batch 16 --steps 20 --variants cudnn,cudnn+packed --peers '' --device-time-budget 200 > $O/bench/packed4.log 2>&1; tail -6 $O/bench/packed4.log
echo QUEUE DONE | tee -a $O/logs/summary.txt
