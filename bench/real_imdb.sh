#!/usr/bin/env bash
# Real IMDB on one GPU, end to end: in-domain pretraining from scratch on the unlabeled reviews
# (+ train texts without labels), then class-conditional fine-tuning from that checkpoint, then
# the whole 25,000-review test set. Pretrained hub weights are not reachable on our GPU machines.
#   bench/real_imdb.sh DATA_DIR OUT_DIR PRETRAIN_EPOCHS CLASS_EPOCHS CONDITIONING [extra run.py flags]
# DATA_DIR holds imdb/{train,test,unsup}.jsonl.gz and gpt2-tokenizer/ (a copy of ../shared/data).
set -euo pipefail
D=$1; O=$2; PE=$3; CE=$4; COND=$5; shift 5
common=(--config.data.source=jsonl --config.data.train_path="$D/imdb/train.jsonl.gz"
        --config.data.test_path="$D/imdb/test.jsonl.gz" --config.data.unsup_path="$D/imdb/unsup.jsonl.gz"
        --config.data.tokenizer="$D/gpt2-tokenizer" --config.data.cache_dir=/tmp/gencls_cache
        --config.train.progress_bar=False)
if [ "$PE" != "0" ] && [ ! -f "$O/pretrain/export/model.safetensors" ]; then
  /usr/bin/time -f "pretrain wall %e s" python3 run.py --config=configs/pretrain_unsup.py --workdir="$O/pretrain" \
    "${common[@]}" --config.train.epochs="$PE" "$@"
fi
init=scratch; [ "$PE" != "0" ] && init="$O/pretrain/export"
/usr/bin/time -f "classes wall %e s" python3 run.py --config=configs/full_6e.py --workdir="$O/$COND" "${common[@]}" \
  --config.model.init="$init" --config.model.conditioning="$COND" --config.train.epochs="$CE" "$@"
