#!/usr/bin/env bash
# B: the IMDB decision recipe (full IMDB, seed 0) from A's export; issue 26's OOD table on it.
set -uo pipefail; source .gpu/env.sh
r decision python3 run.py --config=configs/decision.py --workdir=$O/decision "${common[@]}" "${imdb[@]}" --config.model.init=$INIT
r ood_imdb python3 bench/ood.py --workdir=$O/decision --data=$D --out=$O/logs/ood_imdb.json
tr '\r' '\n' < $O/logs/ood_imdb.log | tail -30
collect decision; tar czf $OUT/callB.tgz -C $O logs collect
