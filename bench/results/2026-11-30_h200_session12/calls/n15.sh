#!/usr/bin/env bash
# Lease of 2026-11-30's sixth session, call 3 (issue 25): packed decision rows through cuDNN's
# segment-offsets kernel (`model.max_segments`, set by the decision objective):
#   QUEUE=bench/results/2026-11-30_h200_session12/calls/n15.sh LIMIT=500 bash bench/lease/call.sh
# 0. ours against the dense mask (attention, then a whole gpt2's log-probs and gradients);
# 1. the step bench, right-padded against packed rows at T=1024 (n13: 0.86 with the mask);
# 2. full IMDB decision.py packed, 1,500 updates from scratch (n14: 56.7 steps/s, val 88.8%);
# 3. TREC packed cold then warm (n13: 123.5 / 132.2 steps/s, train phase 56.5 / 29.3 s).
set -uo pipefail; source bench/lease/env.sh
export LV_INIT=scratch LVX="--config.model.size=gpt2 --config.train.max_steps=2592 --config.train.min_steps=0 --config.train.early_stop_patience=0"
lv() { bash bench/lease/lever.sh "$@"; [ $? = 255 ] && exit 130; return 0; }
mkdir -p $O/bench; [ -f $O/bench/cudnn_packed3.log ] || PYTHONPATH=/tmp/site:$PWD timeout 200 python3 bench/check_cudnn_packed.py > $O/bench/cudnn_packed3.log 2>&1; tail -14 $O/bench/cudnn_packed3.log
[ -f $O/bench/packed3.log ] || PYTHONPATH=/tmp/site:$PWD python3 bench/bench_train_step.py --lengths 1024 --batch 16 --steps 20 --variants cudnn,cudnn+packed --peers '' --device-time-budget 150 > $O/bench/packed3.log 2>&1; tail -4 $O/bench/packed3.log
r ifull_packoff python3 run.py --config=configs/decision.py --workdir=$O/ifull_packoff "${common[@]}" "${imdb[@]}" --config.model.init=scratch --config.model.size=gpt2 --config.seed=0 --config.data.split_seed=0 --config.eval.splits="('val',)" --config.train.max_steps=1500 --config.train.min_steps=0 --config.train.early_stop_patience=0 --config.compile_cache_dir=/tmp/xla_lv/ifull_packoff || exit 1
rm -rf $O/ifull_packoff/checkpoints $O/ifull_packoff/export
lv trec_packoff_s0; lv trec_packoff_s1
echo QUEUE DONE | tee -a $O/logs/summary.txt
