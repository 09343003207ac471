#!/usr/bin/env bash
# Session 19, call 6 (issue 25, test scoring): the device waits ~0.4 s at the class-pass change
# because it is at most ~5 calls ahead of the host (data.prefetch=2 batches built ahead, results
# fetched 2 calls late) while the next pass's rows are built. A deeper queue (data.prefetch)
# should hide it without the second thread that ba_passes.sh showed to cost more: test
# scoring of a label-prefix model at data.prefetch 2 (default), 8, 32, twice each, interleaved.
#   bash bench/results/2026-12-01_h200_session19/calls/prefetch.sh   (carry .gpu/data .gpu_spare .whl)
set -uo pipefail; source bench/lease/env.sh
export PYTHONPATH=/tmp/site
for rep in 1 2; do for n in 2 8 32; do
  python3 bench/bench_score.py --data $D --peer-precisions '' --cache-dir /tmp/pf_tok --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16 --set data.prefetch=$n > $OUT/prefetch_${n}_$rep.log 2>&1
  echo "prefetch $n rep $rep: $(tr '\r' '\n' < $OUT/prefetch_${n}_$rep.log | grep -a 'ours label_prefix: cold')"
done; done
