#!/usr/bin/env bash
# Next lease (planned 2026-11-30, fifth session), issue 25: what packed decision rows
# (`data.batching=pack`, `data.pack_rows` auto) and checkpoints by time (`train.ckpt_every_s`,
# default 120 s) give the small sets. Fire up to three times back to back on one warm machine:
#   QUEUE=bench/results/2026-11-30_h200_session11/calls/next_n13.sh LIMIT=530 bash bench/lease/call.sh
# (carry .gpu and .whl). No export: `model.init=scratch`; every TREC run trains the recipe's
# 2,592 updates (early stopping off) so its train phase compares with 40.9 s at da5b105.
# 1. TREC bucket (today's rows) cold then warm; TREC pack cold then warm;
# 2. SST-2 pack cold; IMDB 500/class decision.py pack cold then warm (one program, not three);
# 3. the step bench: right-padded vs packed rows (the 95% target) at T=1024.
set -uo pipefail; source bench/lease/env.sh
export LV_INIT=scratch LVX="--config.model.size=gpt2 --config.train.max_steps=2592 --config.train.min_steps=0 --config.train.early_stop_patience=0"
lv() { bash bench/lease/lever.sh "$@"; [ $? = 255 ] && exit 130; return 0; }
# 0. cuDNN's own packed layout (segment offsets) against our dense mask: equal? faster? (~30 s)
mkdir -p $O/bench; [ -f $O/bench/cudnn_packed.log ] || PYTHONPATH=/tmp/site:$PWD timeout 120 python3 bench/check_cudnn_packed.py > $O/bench/cudnn_packed.log 2>&1; tail -8 $O/bench/cudnn_packed.log
lv trec_bucket_s0 --config.data.batching=bucket; lv trec_bucket_s1 --config.data.batching=bucket
lv trec_pack_s0 --config.data.batching=pack; lv trec_pack_s1 --config.data.batching=pack
lv sst2_pack_s0 --config.data.batching=pack
for s in 0 1; do
  r i500p_c$s python3 run.py --config=configs/decision.py --workdir=$O/i500p_c$s "${common[@]}" "${imdb[@]}" --config.model.init=scratch --config.model.size=gpt2 --config.data.per_class_limit=500 --config.seed=$s --config.data.split_seed=0 --config.eval.splits="('val',)" --config.data.batching=pack --config.compile_cache_dir=/tmp/xla_lv/i500p || exit 1
  rm -rf $O/i500p_c$s/checkpoints $O/i500p_c$s/export
done
PYTHONPATH=/tmp/site:$PWD python3 bench/bench_train_step.py --lengths 1024,256 --batch 16 --steps 20 --variants cudnn,cudnn+packed --peers '' --device-time-budget 200 > $O/bench/packed.log 2>&1; tail -12 $O/bench/packed.log
echo QUEUE DONE | tee -a $O/logs/summary.txt
