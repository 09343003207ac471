#!/usr/bin/env bash
# Session 18, call 5 (issue 25): the rolled step's optimized HLO, with dynamic slice fusion on
# and off, to read why its stacked residuals are still copied in and out (n33).
source bench/lease/env.sh; export PYTHONPATH=$PYTHONPATH:$PWD
for v in dsf plain; do
  f="--xla_dump_to=$OUT/dump_$v --xla_dump_hlo_module_re=jit_step --xla_dump_hlo_as_text"
  [ $v = dsf ] && f="$f --xla_gpu_enable_dynamic_slice_fusion=true"
  XLA_FLAGS="$f" timeout 200 python3 bench/profile_step.py --profile '' --batch 16 --length 1024 --steps 5 --ablations rolled 2>&1 | grep -v Warning | tail -2
done
cd $OUT && for d in dump_*; do ls $d | head -30; find $d -type f ! -name '*after_optimizations.txt' ! -name '*before_optimizations.txt' ! -name '*buffer-assignment*' -delete; gzip $d/*; done; du -sh $OUT
