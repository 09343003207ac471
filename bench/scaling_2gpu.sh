#!/usr/bin/env bash
# Issue 19 on a two-GPU host, everything beside its one-GPU figure on the same machine:
#   bench/scaling_2gpu.sh DATA OUT step|runs|class [EPOCHS]
# step: train-step scaling (ours vs HF DDP, bench_scaling.py), then test scoring of the 25,000
#       IMDB test texts x 2 random-init class models on 1 and 2 GPUs (bench_score.py).
# runs: configs/full_10e.py (random init: no hub weights on these machines) for EPOCHS epochs
#       on 1 GPU, 2 GPUs data parallel, 2 GPUs with the class axis sharded (one class model per
#       GPU); then --mode=predict on the 25,000 test texts of the 1-GPU run, compared with its
#       eval predictions (issue 17).
set -uo pipefail
D=$1; O=$2; WHAT=$3; EP=${4:-3}
mkdir -p "$O"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$O/gpus_$WHAT.txt"
if [ "$WHAT" = step ]; then
  python3 bench/bench_scaling.py --gpus 1,2 --out "$O/scaling.json" 2>&1 | tee "$O/scaling.txt"
  for n in 1 2; do
    CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((n - 1))) python3 bench/bench_score.py --data "$D" \
      --peer-precisions '' --out "$O/score_${n}gpu.json" > "$O/score_${n}gpu.txt" 2>&1
    tail -n 8 "$O/score_${n}gpu.txt"
  done
  exit 0
fi
common=(--config.data.source=jsonl --config.data.tokenizer="$D/gpt2-tokenizer"
        --config.data.train_path="$D/imdb/train.jsonl.gz" --config.data.test_path="$D/imdb/test.jsonl.gz"
        --config.data.cache_dir=/tmp/gencls_cache --config.compile_cache_dir=
        --config.progress_bars=False --config.model.init=scratch --config.train.epochs="$EP")
run() {  # run NAME GPUS [flags]
  local name=$1 gpus=$2; shift 2
  local t0=$(date +%s%N)
  CUDA_VISIBLE_DEVICES=$gpus python3 run.py --config=configs/full_10e.py --workdir="$O/$name" \
    "${common[@]}" "$@" > "$O/$name.log" 2>&1
  local rc=$?
  echo "$name gpus=$gpus rc=$rc wall=$(( ($(date +%s%N) - t0) / 1000000 ))ms $(grep -a "^test accuracy\|^val accuracy\|^error" "$O/$name.log" | head -n 1)" | tee -a "$O/summary.txt"
}
if [ "$WHAT" = class ]; then  # the class-sharded run alone (beside an earlier `runs`)
  run gpu2_class 0,1 --config.train.class_shards=2
  exit 0
fi
run gpu1 0
run gpu2_data 0,1
run gpu2_class 0,1 --config.train.class_shards=2
t0=$(date +%s%N)
CUDA_VISIBLE_DEVICES=0 python3 run.py --mode=predict --workdir="$O/gpu1" \
  --input="$D/imdb/test.jsonl.gz" --output="$O/predict_test.jsonl" > "$O/predict.log" 2>&1
echo "predict rc=$? wall=$(( ($(date +%s%N) - t0) / 1000000 ))ms $(tail -n 1 "$O/predict.log")" | tee -a "$O/summary.txt"
python3 - "$O" "$D/imdb/test.jsonl.gz" <<'PY' | tee -a "$O/summary.txt"
import json, sys
o = sys.argv[1]
import gzip
names = json.load(open(f"{o}/gpu1/run_info.json"))["label_names"]
# IMDB's ids repeat across classes: key texts by (id, label); predict's rows follow its input
labels = [json.loads(x)["label"] for x in gzip.open(sys.argv[2], "rt")]
ev = {(r["id"], r["label"]): r for r in map(json.loads, open(f"{o}/gpu1/predictions_test.jsonl"))}
pr = {(r["id"], y): r for r, y in zip(map(json.loads, open(f"{o}/predict_test.jsonl")), labels)}
same = sum(names[ev[k]["prediction"]] == pr[k]["prediction"] for k in ev if k in pr)
dll = max(abs(a - pr[k]["log_likelihoods"][n]) for k in ev if k in pr
          for n, a in zip(names, ev[k]["log_likelihoods"]))
print(f"predict vs eval: {len(pr)} predicted, {len(ev)} evaluated, {sum(k in pr for k in ev)} "
      f"matched, {same} same predictions, max |log-likelihood difference| {dll:.3g} nats")
for name in ("gpu1", "gpu2_data", "gpu2_class"):
    m = json.load(open(f"{o}/{name}/metrics.json"))
    print(name, {k: m.get(k) for k in ("accuracy", "steps", "best_step", "train_wall_s", "scoring_wall_s")})
a = [json.loads(x)["prediction"] for x in open(f"{o}/gpu1/predictions_test.jsonl")]
for name in ("gpu2_data", "gpu2_class"):
    b = [json.loads(x)["prediction"] for x in open(f"{o}/{name}/predictions_test.jsonl")]
    print(f"{name}: {sum(x == y for x, y in zip(a, b))}/{len(a)} test predictions equal gpu1's")
PY
