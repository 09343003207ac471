# Sourced by every queue (bench/lease/call.sh): the wheels, the data copy on the machine, the
# flags every run shares, `r` (run once, logged) and `collect` (a run's summaries for $OUT).
{ [ -d /tmp/site/ml_collections ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl; } && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1
# IMDB travels as tar.xz files of the jsonl files (the 64 MiB limit), gzipped again here. The
# tracked tree (~29 MB: bench/results keeps its prediction files gzipped) leaves room for one of
# .gpu/imdb_train_unsup.tar.xz (26 MB: pretraining) or .gpu_spare/imdb_train_test.tar.xz (18 MB:
# the classifier runs) beside .gpu/data; a warm machine keeps an earlier call's copy, so every
# tar found is unpacked, once per machine and tar.
mkdir -p /tmp/gdata && cp -rn .gpu/data/. /tmp/gdata/ || exit 1
for IMDB_TAR in $(ls .gpu/imdb*.tar.xz .gpu_spare/imdb_*.tar.xz 2>/dev/null); do
  [ -f /tmp/gdata/.ready_$(basename $IMDB_TAR) ] || { tar -C /tmp/gdata -xJf $IMDB_TAR && for f in /tmp/gdata/imdb/*.jsonl; do gzip -f $f & done; wait; touch /tmp/gdata/.ready_$(basename $IMDB_TAR); } || exit 1
done
D=/tmp/gdata; O=/tmp/g; mkdir -p $O/logs $O/done
common=(--config.data.source=jsonl --config.data.tokenizer=$D/gpt2-tokenizer --config.data.cache_dir=/tmp/gencls_cache --config.compile_cache_dir=/tmp/gencls_xla --config.progress_bars=False --config.train.keep_checkpoints=1)
imdb=(--config.data.train_path=$D/imdb/train.jsonl.gz --config.data.test_path=$D/imdb/test.jsonl.gz --config.data.unsup_path=$D/imdb/unsup.jsonl.gz)
trec=(--config.data.train_path=$D/trec/train.jsonl --config.data.test_path=$D/trec/test.jsonl)
sst2=(--config.data.train_path=$D/sst2/train.jsonl --config.data.val_path=$D/sst2/dev.jsonl --config.data.test_path=$D/sst2/test.jsonl)
INIT=$O/pretrain/export
# r NAME cmd...: run once (a done marker makes a later call skip it; a step cut off by the call's
# time limit runs again and resumes from its checkpoint), log, exit status and wall seconds
r() { local name=$1; shift; [ -f $O/done/$name ] && return 0; local t0=$(date +%s); "$@" >> $O/logs/$name.log 2>&1; local rc=$?; local w=$(( $(date +%s) - t0 )); [ $rc = 0 ] && echo $w > $O/done/$name; echo "$name rc=$rc wall=${w}s" | tee -a $O/logs/summary.txt; tr '\r' '\n' < $O/logs/$name.log | grep -aE "^test accuracy|^val accuracy|time by phase|^error|Traceback|chose|kept|n-gram" | tail -8 | tee -a $O/logs/summary.txt; [ $rc = 130 ] && exit 130; return $rc; }
collect() { for d in "$@"; do [ -d $O/$d ] || continue; mkdir -p $O/collect/$d; cp $O/$d/{metrics.json,train_summary.json,report.md,run_info.json,predictions_val.jsonl,predictions_test.jsonl,metrics.jsonl} $O/collect/$d/ 2>/dev/null; done; }
