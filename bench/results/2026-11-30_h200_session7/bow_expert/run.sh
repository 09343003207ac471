#!/usr/bin/env bash
# Issue 24, lever 2: a bag-of-words classifier (bench/baselines.py) as a product expert in place of
# the n-gram LM, its weight chosen by validation cross-entropy (the shipped criterion), on the
# shipped recipes' GPU outputs (no model: bench/ngram_expert.py reads predictions + texts).
# Each collected run gets the config.json its recipe wrote (the collect step kept only metrics,
# predictions and run_info), with the data paths of this checkout's ../shared; run from the repo.
set -euo pipefail; R=bench/results/2026-11-30_h200_session7/bow_expert
R0=bench/results; D=$(cd ../shared/data && pwd); W=${W:-/tmp/bow_expert}
rm -rf $W; mkdir -p $W
mk() {  # NAME COLLECTED_RUN CONFIG [key=value ...]
  local name=$1 src=$2 cfg=$3; shift 3
  cp -r $src $W/$name; [ -f $W/$name/predictions_test.jsonl.gz ] && gunzip $W/$name/predictions_test.jsonl.gz
  python3 - "$W/$name" "$cfg" "$@" <<'PY'
import importlib, json, sys
from pathlib import Path
out, cfg, sets = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
c = importlib.import_module(f"configs.{cfg}").get_config()
for kv in sets:
    k, v = kv.split("=", 1)
    node = c
    *path, leaf = k.split(".")
    for p in path:
        node = node[p]
    node[leaf] = json.loads(v) if v[:1] in "[{0123456789-" or v in ("true", "false") else v
(out / "config.json").write_text(json.dumps(c.to_dict(), default=list))
info = json.loads((out / "run_info.json").read_text())
info.pop("data", None)  # the GPU's copies of the files: same texts, other gzip bytes
(out / "run_info.json").write_text(json.dumps(info))
PY
}
S5=$R0/2026-11-29_h200_session5/lease/collect; S6=$R0/2026-11-29_h200_session6/lease/collect
mk trec $S5/trec small_set data.train_path=$D/trec/train.jsonl data.test_path=$D/trec/test.jsonl
mk sst2 $S5/sst2 small_set data.train_path=$D/sst2/train.jsonl data.val_path=$D/sst2/dev.jsonl data.test_path=$D/sst2/test.jsonl
mk i500 $S5/i500 decision data.source=jsonl data.train_path=$D/imdb/train.jsonl.gz data.test_path=$D/imdb/test.jsonl.gz data.per_class_limit=500 data.split_seed=0
mk imdb $S6/imdb decision data.source=jsonl data.train_path=$D/imdb/train.jsonl.gz data.test_path=$D/imdb/test.jsonl.gz
# --expert: C = 1, no search.
G=0,0.1,0.25,0.5,1,2,4,8,16
for n in trec sst2 i500 imdb; do for e in ngram nblr nbsvm; do
  python3 bench/ngram_expert.py --workdir=$W/$n --select=cross_entropy --expert=$e --grid=$G --out=$R/$n.$e.json
done; done
