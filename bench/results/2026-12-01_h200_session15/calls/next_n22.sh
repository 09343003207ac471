#!/usr/bin/env bash
# The same lease's last ~6 minutes (after next_n21.sh): the 2-epoch pretraining with hashed masks
# uninterrupted (n21 cut it at the call limit and resumed it), then the same on branch
# onepass-lse's code (.gpu/onepass) for the one-read logsumexp's effect on an LM run.
#   QUEUE=bench/results/2026-12-01_h200_session15/calls/next_n22.sh LIMIT=380 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh
r pretrain2_hash_once python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain2_hash_once "${common[@]}" "${imdb[@]}" --config.train.epochs=2 --config.model.dropout_masks=hash || exit 1
rm -rf $O/pretrain2_hash_once/checkpoints $O/pretrain2_hash_once/export
r pretrain2_hash_onepass bash -c "cd .gpu/onepass && PYTHONPATH=.:/tmp/site python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain2_hash_onepass ${common[*]} ${imdb[*]} --config.train.epochs=2 --config.model.dropout_masks=hash" || exit 1
rm -rf $O/pretrain2_hash_onepass/checkpoints $O/pretrain2_hash_onepass/export
echo QUEUE DONE | tee -a $O/logs/summary.txt
