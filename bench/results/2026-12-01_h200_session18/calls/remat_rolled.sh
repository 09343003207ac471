#!/usr/bin/env bash
# Session 18, call 6 (issue 25): the rolled step's optimized HLO (dump_rolled.sh) carries ~30
# stacked residuals out of the forward loop (the f32 residual stream several times, LayerNorm's
# f32 outputs, GELU's bf16 intermediates), each written and read back through copies. A remat
# policy that keeps only the matmuls' outputs (model.remat=dots) or only each layer's input
# (full) recomputes the cheap ones instead: how close does the rolled loop then come to the
# unrolled step (which compiles twice as long)?
source bench/lease/env.sh; export PYTHONPATH=$PYTHONPATH:$PWD
ZI=--xla_gpu_enable_dus_accumulator_zero_init_elimination=true
p() { echo "== XLA_FLAGS='$1' ${@:2}"; XLA_FLAGS="$1" timeout 200 python3 bench/profile_step.py "${@:2}" 2>&1 | grep -v Warning | grep -E 'step .* ms|Error|error' ; }
p "" --profile '' --batch 16 --length 1024 --steps 15 --ablations dots,full,rolled,base
p "" --profile '' --batch 48 --length 64 --steps 30 --ablations dots,full,base
p "$ZI" --profile '' --batch 16 --length 1024 --steps 15 --ablations dots,full
p "$ZI" --profile '' --batch 48 --length 64 --steps 30 --ablations dots,full
XLA_FLAGS="$ZI" timeout 200 python3 bench/profile_step.py --batch 16 --length 1024 --steps 10 --ablations dots --profile dots 2>&1 | grep -v Warning | head -45
