#!/usr/bin/env bash
# Next lease, call 1 (no export), by priority: issue 25's small-set step tables (steps per call:
# decides LVX for the lever runs; the host loop), issue 27's two one-GPU rows, test scoring's
# shapes. What LIMIT cuts off runs in a second call of the same queue (done markers skip the rest).
set -uo pipefail; source .gpu/env.sh
[ -f $O/logs/gpu.txt ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $O/logs/gpu.txt
data=(--config.data.source=jsonl --config.data.tokenizer=$D/gpt2-tokenizer --config.data.cache_dir=/tmp/gencls_cache --config.progress_bars=False)
r spc python3 bench/steps_per_call.py --config=configs/small_set.py --per-call=1,4,16 --tmp /tmp/spc --out $O/logs/spc.json -- "${data[@]}" "${trec[@]}" --config.search.candidates="()" --config.search.ensemble=1 --config.model.init=scratch
r host_loop python3 bench/host_loop.py --config=configs/small_set.py --per-call=1,16 --repeats=2 --tmp /tmp/hl --out $O/logs/host_loop.json -- "${data[@]}" "${trec[@]}" --config.model.init=scratch --config.train.epochs=1 --config.train.min_steps=0 --config.search.candidates="()"
r i27_large_full python3 bench/bench_train_step.py --sizes gpt2-large --batch 16 --steps 10 --remat full --variants cudnn --peers compile --lengths 1024 --device-time-budget 150 --out $O/logs/i27_large_full.json
r score3 python3 bench/bench_score.py --data $D --peer-precisions '' --ours-conditioning label_prefix --buckets 256,512,1024 --host-table label_prefix
r i27_maxbatch python3 bench/bench_train_step.py --sizes gpt2-medium,gpt2-large --batch 16 --steps 5 --remat none --variants cudnn --peers compile --lengths 1024 --max-batch --search-budget 60 --device-time-budget 180 --out $O/logs/i27_maxbatch.json
r score9 python3 bench/bench_score.py --data $D --peer-precisions '' --ours-conditioning label_prefix --buckets 256,512,1024 --eval-buckets 128,192,256,320,384,512,640,768,1024
echo QUEUE DONE | tee -a $O/logs/summary.txt
