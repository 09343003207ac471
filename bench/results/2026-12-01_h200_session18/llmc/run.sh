#!/usr/bin/env bash
# llm.c (karpathy/llm.c at f1e2ace, train_gpt2.cu) on this GPU: the issue's reference row.
# GPT-2 124M from random init (-e d12), B=16 x T=1024, bf16, no cuDNN (llm.c's default build),
# 30 steps on IMDB tokens (our tokenizer's ids in llm.c's .bin format).
cd "$(dirname "$0")"
t0=$(date +%s)
timeout 220 make train_gpt2cu NO_MULTI_GPU=1 NO_USE_MPI=1 USE_CUDNN=0 GPU_COMPUTE_CAPABILITY=90 > $OUT/llmc_build.log 2>&1
echo "build rc=$? $(( $(date +%s) - t0 )) s"; tail -3 $OUT/llmc_build.log
for r in 1 0; do
  timeout 60 ./train_gpt2cu -e d12 -b 16 -t 1024 -x 30 -i data/imdb_train.bin -j data/imdb_val.bin -v 1000 -m 1 -s 0 -h 0 -n 0 -r $r > $OUT/llmc_r$r.log 2>&1
  echo "run -r $r rc=$?"; grep -E 'step +(2|10|20|29|30)/|average|recompute|peak|device  ' $OUT/llmc_r$r.log | cut -c1-160
done
