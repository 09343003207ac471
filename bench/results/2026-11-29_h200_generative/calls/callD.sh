#!/usr/bin/env bash
# D: the small-set recipe (configs/small_set.py from A's export) on TREC, seeds 0-2, and SST-2
# seed 0: val/test predictions for issue 24's n-gram expert (applied on the CPU afterwards);
# issue 26's TREC model against IMDB reviews.
set -uo pipefail; source .gpu/env.sh
for s in ${SEEDS:-0 1 2}; do r trec_s$s python3 run.py --config=configs/small_set.py --workdir=$O/trec_s$s "${common[@]}" "${trec[@]}" --config.model.init=$INIT --config.seed=$s; done
r ood_trec python3 bench/ood.py --workdir=$O/trec_s0 --data=$D --out=$O/logs/ood_trec.json
tr '\r' '\n' < $O/logs/ood_trec.log | tail -20
[ -n "${SST:-1}" ] && r sst2_s0 python3 run.py --config=configs/small_set.py --workdir=$O/sst2_s0 "${common[@]}" "${sst2[@]}" --config.model.init=$INIT
collect trec_s0 trec_s1 trec_s2 sst2_s0; tar czf $OUT/callD.tgz -C $O logs collect
