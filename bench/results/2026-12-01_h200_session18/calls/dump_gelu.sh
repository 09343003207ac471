#!/usr/bin/env bash
# Session 18, call 8 (issue 25, test scoring): GELU is ~4 ms of a 40.7 ms scoring call. Does
# XLA fold the bias and GELU into the MLP matmul's epilogue (cuBLASLt's BIAS_GELU) with
# cuBLASLt on, and if not, what stands in the way? The body's optimized HLO with cuBLASLt off
# and on, and the call's time each way.
source bench/lease/env.sh; export PYTHONPATH=$PYTHONPATH:$PWD
for v in default lt; do
  f="--xla_dump_to=$OUT/gelu_$v --xla_dump_hlo_module_re=jit_nohead --xla_dump_hlo_as_text"
  [ $v = lt ] && f="$f --xla_gpu_enable_cublaslt=true"
  echo "== $v"; XLA_FLAGS="$f" timeout 200 python3 bench/profile_score.py --buckets 1024 --variants nohead --iters 20 2>&1 | grep -v Warning | tail -3
done
cd $OUT && for d in gelu_*; do find $d -type f ! -name '*after_optimizations.txt' -delete; gzip $d/*.txt; done; du -sh $OUT
