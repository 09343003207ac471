#!/usr/bin/env bash
# Real IMDB on one GPU, end to end: in-domain pretraining from scratch on the unlabeled reviews
# (+ train texts without labels, skipped when OUT_DIR already has it), then an experiment config
# fine-tuned from that checkpoint and evaluated on the whole 25,000-review test set.
# Pretrained hub weights are not reachable on our GPU machines.
#   bench/real_imdb.sh DATA_DIR OUT_DIR PRETRAIN_EPOCHS CONFIG NAME [extra run.py flags]
# CONFIG is a configs/ name (full_6e, full_10e, ...), NAME the run folder under OUT_DIR.
# CONFIG=augmented_6e first samples synthetic reviews from OUT_DIR/full_6e (run that first), trains
# on train + synthetic, then writes OUT_DIR/comparison_NAME.md (run.py --mode=report).
# DATA_DIR holds imdb/{train,test,unsup}.jsonl.gz and gpt2-tokenizer/ (a copy of ../shared/data).
set -euo pipefail
D=$1; O=$2; PE=$3; CFG=$4; NAME=$5; shift 5
common=(--config.data.source=jsonl --config.data.train_path="$D/imdb/train.jsonl.gz"
        --config.data.test_path="$D/imdb/test.jsonl.gz" --config.data.unsup_path="$D/imdb/unsup.jsonl.gz"
        --config.data.tokenizer="$D/gpt2-tokenizer" --config.data.cache_dir=/tmp/gencls_cache
        --config.progress_bars=False)
if [ "$PE" != "0" ] && [ ! -f "$O/pretrain/export/model.safetensors" ]; then
  /usr/bin/time -f "pretrain wall %e s" python3 run.py --config=configs/pretrain_unsup.py --workdir="$O/pretrain" \
    "${common[@]}" --config.train.epochs="$PE" "$@"
fi
init=scratch; [ "$PE" != "0" ] && init="$O/pretrain/export"
extra=()
if [ "$CFG" = "augmented_6e" ]; then
  /usr/bin/time -f "generate wall %e s" python3 run.py --mode=generate --config=configs/augmented_6e.py \
    --workdir="$O/full_6e" "${common[@]}" "$@"
  extra=(--config.data.extra_train_path="$O/full_6e/synthetic.jsonl")
fi
/usr/bin/time -f "$NAME wall %e s" python3 run.py --config="configs/$CFG.py" --workdir="$O/$NAME" "${common[@]}" \
  --config.model.init="$init" "${extra[@]}" "$@"
if [ "$CFG" = "augmented_6e" ]; then
  python3 run.py --mode=report --workdirs="$O/full_6e,$O/$NAME" --report_file="$O/comparison_$NAME.md"
fi
