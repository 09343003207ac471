#!/usr/bin/env bash
# one call: the queue for LIMIT seconds, then Ctrl-C to its process group (a run saves a
# checkpoint and exits 130; the next call resumes it), then everything so far into $OUT
LIMIT=${LIMIT:-530}
setsid bash .gpu/${QUEUE:-queue.sh} & pid=$!
( sleep $LIMIT; echo "time limit: Ctrl-C"; kill -INT -- -$pid; sleep 25; kill -KILL -- -$pid ) 2>/dev/null & watcher=$!
wait $pid; echo "queue rc=$?"; kill $watcher 2>/dev/null
source .gpu/env.sh
collect pretrain ahead1 ahead2 sst2 trec i500 sst2/search/0 sst2/search/1 sst2/search/2 trec/search/0 trec/search/1 trec/search/2 i500/search/0 i500/search/1 i500/search/2
for d in sst2 trec i500; do cp $O/$d/search/search.json $O/collect/$d/ 2>/dev/null; done
tar czf $OUT/out.tgz -C $O logs collect $(cd $O && ls -d addclass/summary.txt addclass/collect addclass/logs 2>/dev/null)
df -h /tmp | tail -1; tail -5 $O/logs/summary.txt
