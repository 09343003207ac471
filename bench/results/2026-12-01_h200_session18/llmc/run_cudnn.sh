#!/usr/bin/env bash
# llm.c with cuDNN flash attention (USE_CUDNN=1: cudnn-frontend headers at NVIDIA/cudnn-frontend
# 3929da2, cuDNN from the machine's pip wheel), same run as run.sh.
cd "$(dirname "$0")"
CD=$(python3 -c "import nvidia.cudnn as m; print(list(m.__path__)[0])")
ls $CD/include/cudnn.h $CD/lib/ | head -3
mkdir -p /tmp/cudnnlib && ln -sf $CD/lib/libcudnn.so.9 /tmp/cudnnlib/libcudnn.so
export LIBRARY_PATH=/tmp/cudnnlib:$CD/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib64/stubs:$LIBRARY_PATH LD_LIBRARY_PATH=$CD/lib:$LD_LIBRARY_PATH
t0=$(date +%s)
rm -f train_gpt2cu
timeout 230 make train_gpt2cu NO_MULTI_GPU=1 NO_USE_MPI=1 USE_CUDNN=1 GPU_COMPUTE_CAPABILITY=90 NVCC_LDLIBS="-lnvrtc -lcuda" CUDNN_FRONTEND_PATH="cudnn-frontend/include -I$CD/include" > $OUT/llmc_cudnn_build.log 2>&1
echo "build rc=$? $(( $(date +%s) - t0 )) s"; grep -E 'error|cuDNN' $OUT/llmc_cudnn_build.log | head -5
timeout 40 ./train_gpt2cu -e d12 -b 16 -t 1024 -x 30 -i data/imdb_train.bin -j data/imdb_val.bin -v 1000 -m 1 -s 0 -h 0 -n 0 -r 0 > $OUT/llmc_cudnn_r0.log 2>&1
echo "run rc=$?"; grep -E 'step +(2|10|20|30)/|average|cudnn|flash' $OUT/llmc_cudnn_r0.log | cut -c1-160
