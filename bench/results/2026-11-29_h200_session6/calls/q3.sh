#!/usr/bin/env bash
# Session 6, call 3 (same machine): lever 5 (IMDB full's validation scored with windows beside
# truncation, the same eval path, eval.long_text) beside the lever pool, two at a time.
set -uo pipefail; source .gpu/env.sh
l5() { for lt in truncate window; do
  r imdb_val_$lt python3 run.py --mode=eval --workdir=$O/imdb --config.eval.long_text=$lt --config.eval.splits="('val',)" --config.progress_bars=False --config.compile_cache_dir=/tmp/gencls_xla
  mkdir -p $O/collect/imdb_val_$lt; cp $O/imdb/{metrics.json,predictions_val.jsonl,history.jsonl} $O/collect/imdb_val_$lt/; done; }
[ -f $O/collect/imdb/metrics.json ] && { l5 & }
xargs -P ${POOL:-2} -L 1 bash .gpu/lever.sh < .gpu/levers.txt
wait
echo QUEUE DONE | tee -a $O/logs/summary.txt
