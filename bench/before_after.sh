#!/usr/bin/env bash
# A refactor's speed check on the GPU: an older tree beside this one, the same benches
# interleaved (old, new, old, new, ...), REPS times each; prints every figure and the medians.
#   bench/before_after.sh OLD_TREE DATA [REPS] [step|score|both]
# OLD_TREE: e.g. `git archive <rev> | tar -x -C old`; DATA: imdb/{train,test}.jsonl.gz and
# gpt2-tokenizer/ (../shared/data). Step: bench_train_step.py --peers '' (gpt2, T=1024, batch 16,
# 30 steps); score: bench_score.py with no PyTorch peer (the 25,000 IMDB test texts, 2 classes),
# each tree with its own compile cache (the first run of a tree compiles, the others read it).
# STEP_ARGS / SCORE_ARGS (environment) are added to each bench's flags, e.g.
# SCORE_ARGS="--ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16".
set -uo pipefail
OLD=$(cd "$1" && pwd); D=$(cd "$2" && pwd); REPS=${3:-3}; WHAT=${4:-both}
NEW=$(cd "$(dirname "$0")/.." && pwd); L=$(mktemp -d)
run() {  # run TREE KIND REP: one bench, its figure lines (progress bars' \r turned into lines)
  local dir=$NEW; [ "$1" = old ] && dir=$OLD
  if [ "$2" = step ]; then
    (cd "$dir" && python3 bench/bench_train_step.py --peers '' --lengths 1024 --batch 16 --steps 30 \
      ${STEP_ARGS:-})
  else
    (cd "$dir" && python3 bench/bench_score.py --data "$D" --peer-precisions '' \
      --compile-cache-dir "/tmp/before_after_xla_$1" --cache-dir /tmp/before_after_tok ${SCORE_ARGS:-})
  fi > "$L/$2_$1_$3.log" 2>&1
  tr '\r' '\n' < "$L/$2_$1_$3.log" | grep -aE "^ours" | sed "s/^/$2 $1 $3: /"
}
for kind in step score; do
  [ "$WHAT" = both ] || [ "$WHAT" = "$kind" ] || continue
  for rep in $(seq "$REPS"); do for tree in old new; do run $tree $kind "$rep"; done; done
done | tee "$L/all.txt"
python3 - "$L/all.txt" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"step (\w+) \d+: ours (\S+)\s+\d+\s+(\d+)", line)  # impl, T, tokens/s
    if m:
        rows.setdefault(("step " + m[2], m[1]), []).append(float(m[3]))
    m = re.match(r"score (\w+) \d+: ours(?: label_prefix)?: cold ([\d.]+) s, warm ([\d.]+) s", line)
    if m:
        rows.setdefault(("score warm s", m[1]), []).append(float(m[3]))
        rows.setdefault(("score cold s", m[1]), []).append(float(m[2]))
for what in sorted({w for w, _ in rows}):
    old, new = (statistics.median(rows.get((what, t), [float("nan")])) for t in ("old", "new"))
    print(f"{what:24s} old {old:12.2f}  new {new:12.2f}  new/old {new / old:.4f}  "
          f"(runs {len(rows.get((what, 'old'), []))}/{len(rows.get((what, 'new'), []))})")
PY
