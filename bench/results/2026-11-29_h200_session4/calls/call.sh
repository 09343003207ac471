#!/usr/bin/env bash
# one call: the queue for LIMIT seconds, then Ctrl-C to its process group (a run saves a
# checkpoint and exits 130; the next call resumes it), then everything so far into $OUT
LIMIT=${LIMIT:-530}
setsid bash .gpu/${QUEUE:-queue.sh} & pid=$!
( sleep $LIMIT; echo "time limit: Ctrl-C"; kill -INT -- -$pid; sleep 25; kill -KILL -- -$pid ) 2>/dev/null & watcher=$!
wait $pid; echo "queue rc=$?"; kill $watcher 2>/dev/null
source .gpu/env.sh
collect pretrain trec_s0 trec_s1 trec_s2 trec_ens sst2_s0 sst2_s1 sst2_s2 sst2_ens i500_s0 i500_s1 i500_s2 i500_ens
tar czf $OUT/out.tgz -C $O logs collect $(cd $O && ls -d addclass/summary.txt addclass/collect addclass/logs 2>/dev/null)
df -h /tmp | tail -1; tail -5 $O/logs/summary.txt
