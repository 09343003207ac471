#!/usr/bin/env bash
# Issue 14's accuracy matrix on one GPU, in priority order, each run a plain run.py call:
# in-domain pretraining (IMDB unlabeled + train texts), then from its export the
# decision-trained generative classifier (configs/decision.py) and the discriminative baseline
# (configs/discriminative.py) on full IMDB, 500 and 2,500 per class (seeds 0-2), SST-2 and
# TREC (configs/small_set.py). Every run appends one line to OUT/summary.txt; OUT/collect/NAME
# keeps what the tables need (metrics.json, report.md, metrics.jsonl, test predictions).
#   [ONLY=regex] bench/accuracy_gpu.sh DATA OUT [PRETRAIN_EPOCHS]
# DATA holds imdb/{train,test,unsup}.jsonl.gz, sst2/, trec/, gpt2-tokenizer/ (../shared/data).
set -uo pipefail
D=$1; O=$2; PE=${3:-4}
mkdir -p "$O/logs" "$O/collect"
common=(--config.data.source=jsonl --config.data.tokenizer="$D/gpt2-tokenizer"
        --config.data.cache_dir=/tmp/gencls_cache --config.compile_cache_dir=/tmp/gencls_xla
        --config.progress_bars=False)
imdb=(--config.data.train_path="$D/imdb/train.jsonl.gz" --config.data.test_path="$D/imdb/test.jsonl.gz"
      --config.data.unsup_path="$D/imdb/unsup.jsonl.gz")
sst2=(--config.data.train_path="$D/sst2/train.jsonl" --config.data.val_path="$D/sst2/dev.jsonl"
      --config.data.test_path="$D/sst2/test.jsonl")
trec=(--config.data.train_path="$D/trec/train.jsonl" --config.data.test_path="$D/trec/test.jsonl")
run() {  # run NAME --config=FILE run.py-flags... (absl wants --config before its overrides)
  local name=$1 cfg=$2; shift 2
  [[ "$name" == pretrain || "$name" =~ ${ONLY:-.} ]] || return 0  # ONLY=regex: a subset of runs
  local t0=$(date +%s)
  python3 run.py "$cfg" --workdir="$O/$name" "${common[@]}" "$@" > "$O/logs/$name.log" 2>&1
  local rc=$?
  mkdir -p "$O/collect/$name"
  for f in metrics.json report.md metrics.jsonl history.jsonl predictions_test.jsonl train_summary.json; do
    [ -f "$O/$name/$f" ] && cp "$O/$name/$f" "$O/collect/$name/"
  done
  echo "$name rc=$rc wall=$(( $(date +%s) - t0 ))s $(grep -a "^test accuracy\|^val accuracy\|^error" "$O/logs/$name.log" | head -n 1)" >> "$O/summary.txt"
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$O/summary.txt"
run pretrain --config=configs/pretrain_unsup.py "${imdb[@]}" --config.train.epochs="$PE"
init=(--config.model.init="$O/pretrain/export")
run imdb_decision --config=configs/decision.py "${imdb[@]}" "${init[@]}"
run imdb_disc --config=configs/discriminative.py "${imdb[@]}" "${init[@]}"
for s in 0 1 2; do
  run imdb500_decision_s$s --config=configs/decision.py "${imdb[@]}" "${init[@]}" --config.data.per_class_limit=500 --config.seed=$s
done
for s in 0 1 2; do
  run imdb500_disc_s$s --config=configs/discriminative.py "${imdb[@]}" "${init[@]}" --config.data.per_class_limit=500 --config.seed=$s
done
run sst2_decision --config=configs/small_set.py "${sst2[@]}" "${init[@]}"
run trec_decision --config=configs/small_set.py "${trec[@]}" "${init[@]}"
for s in 0 1 2; do
  run imdb2500_decision_s$s --config=configs/decision.py "${imdb[@]}" "${init[@]}" --config.data.per_class_limit=2500 --config.seed=$s
done
for s in 0 1 2; do
  run imdb2500_disc_s$s --config=configs/discriminative.py "${imdb[@]}" "${init[@]}" --config.data.per_class_limit=2500 --config.seed=$s
done
run sst2_disc --config=configs/small_set.py "${sst2[@]}" "${init[@]}" --config.model.conditioning=discriminative
run trec_disc --config=configs/small_set.py "${trec[@]}" "${init[@]}" --config.model.conditioning=discriminative
run imdb_decision_per_class --config=configs/decision.py "${imdb[@]}" "${init[@]}" --config.model.conditioning=per_class
echo "ALL DONE" >> "$O/summary.txt"
