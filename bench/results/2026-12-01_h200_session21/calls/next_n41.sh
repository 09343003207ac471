#!/usr/bin/env bash
# Session 21, call 1 (issue 25, step and test scoring): does XLA's Triton GEMM for every dot
# (`--xla_gpu_triton_gemm_any=true`) take GELU into the MLP-out matmul's operand load, and what
# does it do to the label-prefix scoring call and the real training step? Each measured with the
# flag off and on in the same call, one process each; plus which Triton flags this XLA knows.
#   QUEUE=bench/results/2026-12-01_h200_session21/calls/next_n41.sh LIMIT=540 bash bench/lease/call.sh
set -uo pipefail; source bench/lease/env.sh; export PYTHONPATH=$PYTHONPATH:$PWD
mkdir -p $O/bench
ANY=--xla_gpu_triton_gemm_any=true
r flags bash -c 'for f in $(python3 -c "import jax, jaxlib, os; print(os.path.dirname(jaxlib.__file__))") $(python3 -c "import jax_plugins, os; print(os.path.dirname(list(jax_plugins.__path__)[0]))" 2>/dev/null); do find $f -name "*.so" | xargs strings 2>/dev/null | grep -oE "^xla_gpu_[a-z0-9_]*(triton|epilogue|fusion|gemm)[a-z0-9_]*$"; done | sort -u'
r gelu_off python3 bench/gelu_epilogue.py --ways jax,none,mlp --dump $O/bench/gelu_off
r gelu_any env XLA_FLAGS=$ANY python3 bench/gelu_epilogue.py --ways jax,none,mlp --dump $O/bench/gelu_any
r lp_off python3 bench/profile_score.py --buckets 1024 --variants lp --iters 30 --scoring-head pallas --profile 0
r lp_any env XLA_FLAGS=$ANY python3 bench/profile_score.py --buckets 1024 --variants lp --iters 30 --scoring-head pallas --profile 0
r step_off python3 bench/profile_step.py --batch 16 --length 1024 --steps 20 --ablations real+drop --profile ''
r step_any env XLA_FLAGS=$ANY python3 bench/profile_step.py --batch 16 --length 1024 --steps 20 --ablations real+drop --profile ''
r lp_off2 python3 bench/profile_score.py --buckets 1024 --variants lp --iters 30 --scoring-head pallas --profile 0
( cd $O/bench && gzip -f gelu_*/*.txt ) 2>&1
for n in flags gelu_off gelu_any lp_off lp_any step_off step_any lp_off2; do echo "== $n"; tail -6 $O/logs/$n.log; done | tee -a $O/logs/summary.txt
echo QUEUE DONE | tee -a $O/logs/summary.txt
