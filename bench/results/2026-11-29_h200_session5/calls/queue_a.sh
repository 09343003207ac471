#!/usr/bin/env bash
# Session 5, call A: compile ahead's cuDNN failure with command buffers off (2 cold short TREC
# runs), the 2-epoch pretraining, then SST-2 with the shipped recipe (small_set.py = 3 seeds
# kept as an ensemble by one command).
set -uo pipefail; source .gpu/env.sh
[ -f $O/logs/gpu.txt ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $O/logs/gpu.txt
one=(--config.search.candidates="()" --config.search.ensemble=1 --config.train.max_steps=150 --config.eval.splits="('val',)" --config.compile_ahead_threads=-1 --config.model.init=scratch)
for a in 1 2; do XLA_FLAGS=--xla_gpu_enable_command_buffer= r ahead_nocb$a python3 run.py --config=configs/small_set.py --workdir=$O/ahead$a "${common[@]}" "${trec[@]}" "${one[@]}" --config.compile_cache_dir=/tmp/xla_ahead$a; done
r pretrain python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain "${common[@]}" "${imdb[@]}" --config.train.epochs=2 || exit 1
rm -rf $O/pretrain/checkpoints
r sst2 python3 run.py --config=configs/small_set.py --workdir=$O/sst2 "${common[@]}" "${sst2[@]}" --config.model.init=$INIT
echo QUEUE DONE | tee -a $O/logs/summary.txt
