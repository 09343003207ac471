#!/usr/bin/env bash
# C: issue 26 item 4: TREC per_class LM, NUM and ABBR added vs all six (the add_class branch's tree).
set -uo pipefail; source .gpu/env.sh
cd .gpu/addclass && bash bench/add_class_trec.sh $D $O/addclass $INIT; cd - >/dev/null
cat $O/addclass/summary.txt
tar czf $OUT/callC.tgz -C $O logs addclass/summary.txt addclass/collect addclass/logs
