#!/usr/bin/env bash
# one call: the queue for LIMIT seconds, then Ctrl-C to its process group (a run saves a
# checkpoint and exits 130; the next call resumes it), then everything so far into $OUT
LIMIT=${LIMIT:-530}
setsid bash .gpu/${QUEUE:-q1.sh} & pid=$!
( sleep $LIMIT; echo "time limit: Ctrl-C"; kill -INT -- -$pid; sleep 25; kill -KILL -- -$pid ) 2>/dev/null & watcher=$!
wait $pid; echo "queue rc=$?"; kill $watcher 2>/dev/null
source .gpu/env.sh
collect pretrain pretrain4 imdb4 imdb4_ema imdb4_test i500_s0 i500_s1 i500_s2 $(cd $O && ls -d lv/* 2>/dev/null)
tar czf $OUT/out.tgz -C $O logs collect $(cd $O && ls -d bench 2>/dev/null)
df -h /tmp | tail -1; nvidia-smi --query-gpu=memory.used --format=csv,noheader; tail -12 $O/logs/summary.txt
