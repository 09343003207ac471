#!/usr/bin/env bash
# Issue 26, item 4 on one GPU: a class added to a trained per_class LM run (--mode=add_class)
# against all classes trained together. TREC's six classes, configs/small_set.py with the
# per_class conditioning and the LM objective, from the IMDB in-domain export:
#   all6         the six classes trained together (the reference);
#   five_X       the five others, X left out of train and test (X = NUM, 896 training questions,
#                and ABBR, 86);
#   add_X        five_X + X from its training questions (--mode=add_class), evaluated by
#                add_class itself (offsets, temperature and OOD threshold refitted on its six
#                classes' validation questions) on the whole six-class test set
#                (--config.data.test_path=the TREC test: no second eval).
# OUT/summary.txt: one line per command (exit status, wall seconds), then per X the test
# accuracy of all6 and add_X on the same 500 questions, X's F1 in each, McNemar's paired counts,
# the ECE after temperature of each, and the time of training the five + adding X against
# training all six. OUT/collect/: the metrics, reports and predictions.
#   bench/add_class_trec.sh DATA OUT [INIT]
# DATA holds trec/{train,test}.jsonl and gpt2-tokenizer/ (a copy of ../shared/data). INIT: the
# IMDB in-domain export (<pretrain workdir>/export); only without it does configs/pretrain_unsup.py
# train one in OUT/pretrain first (PE epochs, default 1; then DATA needs imdb/ too).
# XS: the classes to hold out and add (default "NUM ABBR"). A step whose workdir already holds
# metrics.json is not run again (a call cut off by a time limit continues where it stopped; a
# reference all6 from an earlier call can be copied into OUT/all6 beforehand).
# EXTRA: more run.py flags for the trainings (a CPU smoke run: EXTRA='--config.train.max_steps=2
# --config.model.dtype=float32' and INIT=a tiny run's export/<class>; no nvidia-smi is fine).
set -uo pipefail
D=$1; O=$2; INIT=${3:-}; PE=${PE:-1}
read -ra extra <<< "${EXTRA:-}"
mkdir -p "$O/logs" "$O/collect" "$O/data"
common=(--config.data.tokenizer="$D/gpt2-tokenizer" --config.data.cache_dir=/tmp/gencls_cache
        --config.compile_cache_dir=/tmp/gencls_xla --config.progress_bars=False)
step() {  # step NAME run.py-flags...: one run.py call, its log, exit status and wall seconds
  local name=$1; shift
  if [ -f "$O/$name/metrics.json" ]; then echo "$name: done before, kept" >> "$O/summary.txt"; return 0; fi
  local t0=$(date +%s)
  python3 run.py "$@" > "$O/logs/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc wall=$(( $(date +%s) - t0 ))s $(grep -a "^test accuracy\|^error" "$O/logs/$name.log" | head -n 1)" >> "$O/summary.txt"
  echo "$(( $(date +%s) - t0 ))" > "$O/logs/$name.wall"
  return $rc
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$O/summary.txt" 2>/dev/null
if [ -z "$INIT" ]; then
  INIT="$O/pretrain/export"
  [ -f "$INIT/model.safetensors" ] || step pretrain --config=configs/pretrain_unsup.py \
    --workdir="$O/pretrain" "${common[@]}" --config.data.source=jsonl \
    --config.data.train_path="$D/imdb/train.jsonl.gz" --config.data.test_path="$D/imdb/test.jsonl.gz" \
    --config.data.unsup_path="$D/imdb/unsup.jsonl.gz" --config.train.epochs="$PE" || exit 1
fi
# TREC without class X (train and test), and X's training questions as add_class's --input
python3 - "$D/trec" "$O/data" <<'EOF'
import json, pathlib, sys
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = {s: [json.loads(line) for line in open(src / f"{s}.jsonl")] for s in ("train", "test")}
for x in ("NUM", "ABBR"):
    (out / f"no_{x}").mkdir(parents=True, exist_ok=True)
    for s, rs in rows.items():
        (out / f"no_{x}" / f"{s}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rs if r["label"] != x))
    (out / f"{x}.jsonl").write_text("".join(
        json.dumps({"id": r["id"], "text": r["text"]}) + "\n"
        for r in rows["train"] if r["label"] == x))
EOF
recipe=(--config=configs/small_set.py "${common[@]}" --config.model.conditioning=per_class
        --config.train.objective=lm --config.model.init="$INIT"
        --config.eval.train_sample_per_class=0 "${extra[@]}")  # no train/val gap: not compared
step all6 "${recipe[@]}" --workdir="$O/all6" \
  --config.data.train_path="$D/trec/train.jsonl" --config.data.test_path="$D/trec/test.jsonl"
# a per_class gpt2 checkpoint with its optimizer state is ~1.5 GB per class, up to 3 kept per run:
# the H200's 64 GiB disk filled up at five_ABBR (2026-11-29); the tables read only metrics and
# predictions, so checkpoints go once no later step reads them
rm -rf "$O/all6/checkpoints"
read -ra xs <<< "${XS:-NUM ABBR}"
for x in "${xs[@]}"; do
  step "five_$x" "${recipe[@]}" --workdir="$O/five_$x" \
    --config.data.train_path="$O/data/no_$x/train.jsonl" \
    --config.data.test_path="$O/data/no_$x/test.jsonl" || continue
  [ -f "$O/add_$x/metrics.json" ] || rm -rf "$O/add_$x"
  step "add_$x" --mode=add_class --workdir="$O/five_$x" --new_workdir="$O/add_$x" \
    --input="$O/data/$x.jsonl" --label="$x" --config.data.test_path="$D/trec/test.jsonl"
  rm -rf "$O/five_$x/checkpoints" "$O/add_$x/checkpoints"
done
for w in all6 five_NUM add_NUM five_ABBR add_ABBR; do
  mkdir -p "$O/collect/$w"
  for f in metrics.json report.md run_info.json history.jsonl predictions_test.jsonl \
           train_summary.json add_class/metrics.jsonl; do
    [ -f "$O/$w/$f" ] && cp "$O/$w/$f" "$O/collect/$w/$(echo "$f" | tr / _)"
  done
done
python3 - "$O" >> "$O/summary.txt" <<'EOF'
import json, pathlib, sys
o = pathlib.Path(sys.argv[1])
def wall(name):
    p = o / "logs" / f"{name}.wall"
    return int(p.read_text()) if p.exists() else None
def preds(folder):
    return {r["id"]: r for r in map(json.loads, open(folder / "predictions_test.jsonl"))}
def f3(v):
    return "-" if v is None else f"{v:.3f}"
ref = o / "all6"
print("| X | test acc all6 | five+X added | F1(X) all6 | F1(X) added | only all6 right | "
      "only added right | ECE cal. all6 | ECE cal. added | T all6 | T added | s all6 | "
      "s five | s add | add: steps, epochs, train/val questions |")
print("|" + " --- |" * 15)
for x in ("NUM", "ABBR"):
    added = o / f"add_{x}"
    if not (ref / "metrics.json").exists() or not (added / "metrics.json").exists():
        print(f"| {x} | missing runs (see the lines above) |")
        continue
    j_ref, j_add = (json.loads((d / "metrics.json").read_text()) for d in (ref, added))
    m_ref, m_add = j_ref["results"]["test"]["bayes"], j_add["results"]["test"]["bayes"]
    c_ref, c_add = j_ref["calibration"], j_add["calibration"]
    a, b = preds(ref), preds(added)
    assert set(a) == set(b), "the two runs scored other test questions"
    right_a = {i: a[i]["prediction"] == a[i]["label"] for i in a}
    right_b = {i: b[i]["prediction"] == b[i]["label"] for i in a}
    only_ref = sum(right_a[i] and not right_b[i] for i in a)
    only_add = sum(right_b[i] and not right_a[i] for i in a)
    info = json.loads((added / "run_info.json").read_text())["added_classes"][-1]
    t = info["training"]
    print(
        f"| {x} | {100 * m_ref['accuracy']:.2f}% | {100 * m_add['accuracy']:.2f}% "
        f"(n={m_add['n']}) | {f3(m_ref['per_class'][x]['f1'])} | "
        f"{f3(m_add['per_class'][x]['f1'])} | {only_ref} | {only_add} | "
        f"{f3(c_ref['ece_calibrated'])} | {f3(c_add['ece_calibrated'])} | "
        f"{f3(c_ref['temperature'])} | {f3(c_add['temperature'])} | {wall('all6')} | "
        f"{wall(f'five_{x}')} | {wall(f'add_{x}')} (training {t['train_wall_s']:.0f}) | "
        f"{t['steps']}, {t['epochs_done']}, {info['train']}/{info['val']} |"
    )
EOF
echo "ALL DONE" >> "$O/summary.txt"
