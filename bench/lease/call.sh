#!/usr/bin/env bash
# One call of the device tool (`run`, carry [".gpu", ".whl"]): the queue QUEUE (a script path)
# for LIMIT seconds, then Ctrl-C to its process group (a run saves a checkpoint and exits 130;
# the next call, on the same warm machine, resumes it), then every run's summaries into $OUT.
#   QUEUE=bench/results/<lease>/calls/<queue>.sh LIMIT=530 bash bench/lease/call.sh
# .gpu/ (git-ignored) holds the data the calls need: data/ (gpt2-tokenizer, sst2, trec) and
# imdb.tar.xz; .whl/ the ml-collections wheel (bench/lease/env.sh installs it).
LIMIT=${LIMIT:-530}
setsid bash "${QUEUE:?QUEUE=path of the queue script}" & pid=$!
# the watcher holds none of this script's output (a pipe after the call, `| tail`, would wait for
# its sleep: 130 s of device time lost once) and its sleep dies with it; a queue it stopped
# prints `queue rc=130`
( sleep $LIMIT; kill -INT -- -$pid; sleep 25; kill -KILL -- -$pid ) >/dev/null 2>&1 </dev/null &
watcher=$!
wait $pid; echo "queue rc=$?"; pkill -P $watcher 2>/dev/null; kill $watcher 2>/dev/null
source bench/lease/env.sh
collect $(cd $O && for d in */ lv/*/; do { [ -f "$d/train_summary.json" ] || [ -f "$d/metrics.json" ]; } && echo "${d%/}"; done)
tar czf $OUT/out.tgz -C $O logs collect $(cd $O && ls -d bench 2>/dev/null)
df -h /tmp | tail -1; nvidia-smi --query-gpu=memory.used --format=csv,noheader; tail -12 $O/logs/summary.txt
