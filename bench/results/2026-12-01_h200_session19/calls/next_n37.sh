#!/usr/bin/env bash
# Session 19, call 1 (issue 25, step): where the recipes' real step loses to the bare AdamW step
# (465k against 494k tok/s at 16 x 1,024 in earlier leases, no dropout), and what bfloat16
# logits in the training head (model.logits_dtype, new) give: step ablations and two kernel
# profiles (bare, real with dropout) on one machine; then 2-epoch pretraining with bfloat16
# logits (its wall against the <= 90 s target, its export for call 2's accuracy check).
#   QUEUE=bench/results/2026-12-01_h200_session19/calls/next_n37.sh LIMIT=560 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh; export PYTHONPATH=$PYTHONPATH:$PWD
r step_abl python3 bench/profile_step.py --batch 16 --length 1024 --steps 20 --ablations base,base+bf16l,real,real+bf16l,real+drop,real+drop+bf16l --profile ''
r step_pre python3 bench/profile_step.py --batch 32 --length 1024 --steps 10 --ablations real+packed+drop,real+packed+drop+bf16l --profile ''
r prof_base python3 bench/profile_step.py --batch 16 --length 1024 --steps 10 --ablations base --profile base --top 70
r prof_real python3 bench/profile_step.py --batch 16 --length 1024 --steps 10 --ablations real+drop --profile real+drop --top 70
r pretrain2_bf16l python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain "${common[@]}" "${imdb[@]}" --config.train.epochs=2 --config.model.logits_dtype=bfloat16 || exit 1
rm -rf $O/pretrain/checkpoints
echo QUEUE DONE | tee -a $O/logs/summary.txt
