#!/usr/bin/env bash
# The next lease (planned 2026-11-30 after its eighth lease), issue 25: fire up to three times
# back to back (~13 minutes of work; done markers skip what an earlier call finished). Carry .gpu and .whl.
#   QUEUE=bench/results/2026-12-01_h200_session15/calls/next_n24.sh LIMIT=540 bash bench/lease/call.sh
# 1. the step against torch.compile at today's code (hashed masks, one-read logsumexp), the
#    recipe's numerics (dropout 0.1, packed rows) and right-padded rows: the 1.5x target's row;
# 2. test scoring (label_prefix, packed 16) with the head's chunk at 8,192 (default), 2,048, 512
#    and 128 tokens: a chunk's float32 logits at 128 tokens (26 MB) fit the 50 MB L2, so the
#    one-read logsumexp would read them from L2, not HBM; the chunks' loop costs launches;
# 3. a kernel profile of today's step (T = 1,024, batch 16): where the ~35 ms go now;
# 4. a kernel profile of a scoring call (32 rows x 1,024, the fused head, and the body alone):
#    the head's share of the ~26 ms per call, against the H100's 17 ms of 49;
# 5. XLA's cuBLASLt path (`--xla_gpu_enable_cublaslt=true`, off by default: its GEMM rewriter
#    folds bias and the tanh GELU into the matmul's epilogue) on the step and on test scoring,
#    against the default rows of 1 and 2 from the same call;
# 6. the cold stall with XLA's autotuning at level 1 (candidates timed without the output
#    buffers' init, re-init and correctness check; default 4): n23's TREC run (gpt2 from
#    scratch, a fresh compile cache) against its 25.8 s stall and 147.8 steps/s;
# 7. the 2-epoch pretraining (hashed masks) with each epoch planned once: the log's gap before
#    its "2 epochs" line against n22's 4.3 s, its train phase against 117.8 s (n22, warm).
set -uo pipefail; source bench/lease/env.sh
mkdir -p $O/bench
# b NAME cmd...: run once into $O/bench/NAME.log; a bench cut by the call's limit stays NAME.part
# (a background queue ignores the Ctrl-C, so the watcher's KILL ends it before the rename) and
# runs again next call
b() { local n=$1; shift; [ -f $O/bench/$n.log ] && return 0; env PYTHONPATH=/tmp/site:$PWD "$@" > $O/bench/$n.part 2>&1; mv $O/bench/$n.part $O/bench/$n.log; }
b step_vs_compile timeout 300 python3 bench/bench_train_step.py --lengths 1024 --batch 16 --steps 20 --repeats 3 --variants cudnn,cudnn+packed --dropout 0.1 --prng hash; grep -aE "^(ours|HF|torch)|compile" $O/bench/step_vs_compile.log | tail -8
for ch in 8192 2048 512 128; do
  b score_chunk$ch timeout 120 python3 bench/bench_score.py --data $D --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16 --peer-precisions '' --set model.head_chunk=$ch; tr '\r' '\n' < $O/bench/score_chunk$ch.log | grep -a "^ours label" | sed "s/^/chunk $ch: /"
done
b profile_step timeout 200 python3 bench/profile_step.py --batch 16 --length 1024 --steps 15 --ablations base --profile base; tail -30 $O/bench/profile_step.log
b profile_score timeout 150 python3 bench/profile_score.py --buckets 1024 --variants fused,nohead --iters 10 --profile 1024; tail -30 $O/bench/profile_score.log
LT="--xla_gpu_enable_cublaslt=true"
XLA_FLAGS="$LT" python3 -c "import jax, jax.numpy as jnp; print(jax.jit(lambda x: x @ x)(jnp.ones((8, 8))).sum())" > $O/bench/lt_flag.log 2>&1 && LT_OK=1 || LT_OK=0; tail -1 $O/bench/lt_flag.log; echo LT_OK=$LT_OK
if [ $LT_OK = 1 ]; then
  XLA_FLAGS="$LT" b step_cublaslt timeout 200 python3 bench/bench_train_step.py --lengths 1024 --batch 16 --steps 20 --repeats 3 --variants cudnn+packed --dropout 0.1 --prng hash --peers ''; grep -a "^ours" $O/bench/step_cublaslt.log
  XLA_FLAGS="$LT" b score_cublaslt timeout 120 python3 bench/bench_score.py --data $D --ours-conditioning label_prefix --buckets 256,512,1024 --pack-texts 16 --peer-precisions ''; tr '\r' '\n' < $O/bench/score_cublaslt.log | grep -a "^ours label" | sed "s/^/cublaslt: /"
fi
export LV_INIT=scratch LVX="--config.model.size=gpt2 --config.train.max_steps=2592 --config.train.min_steps=0 --config.train.early_stop_patience=0"
XLA_FLAGS=--xla_gpu_autotune_level=1 bash bench/lease/lever.sh trec_at1_s0; [ $? = 255 ] && exit 130
r pretrain2_plans python3 run.py --config=configs/pretrain_unsup.py --workdir=$O/pretrain2_plans "${common[@]}" "${imdb[@]}" --config.train.epochs=2 || exit 1
rm -rf $O/pretrain2_plans/checkpoints $O/pretrain2_plans/export
echo QUEUE DONE | tee -a $O/logs/summary.txt
