#!/usr/bin/env bash
# A: 2-epoch IMDB pretraining (the export B, C, D start from), then issue 23's scoring before/after.
set -uo pipefail; source .gpu/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $O/logs/gpu.txt
r pretrain python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain "${common[@]}" "${imdb[@]}" --config.train.epochs=2
ls $INIT
timeout ${BA_LIMIT:-300} bash bench/before_after.sh .gpu/old $D ${REPS:-2} score 2>&1 | tee $O/logs/before_after_score.txt
collect pretrain; tar czf $OUT/callA.tgz -C $O logs collect
