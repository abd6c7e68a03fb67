#!/usr/bin/env bash
# Runs a CUDA-built binary on a machine WITHOUT a GPU or driver, against the link-time stub libraries of
# tools/cuda/env.sh (every CUDA call fails with CUDA_ERROR_STUB_LIBRARY): the CPU code paths run, and the
# CUDA tests print their SKIP lines. For example:
#   tools/cuda/run-with-stubs.sh target/release/deps/cuda_ops-<hash>
#   tools/cuda/run-with-stubs.sh target/release/xtask train --config configs/synthetic.toml --iters 2
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=env.sh
. "$root/tools/cuda/env.sh"
lib="$CUDA_ROOT/lib/stubs-run"
if [ ! -e "$lib/libcuda.so.1" ]; then
  mkdir -p "$lib"
  for pair in cuda:libcuda.so.1 cublas:libcublas.so.13 cublasLt:libcublasLt.so.13 curand:libcurand.so.10 \
    nvrtc:libnvrtc.so.13 cudnn:libcudnn.so.9 nccl:libnccl.so.2; do
    ln -sf "../stubs/lib${pair%%:*}.so" "$lib/${pair#*:}"
  done
  ln -sf ../libcudart.so.13 "$lib/libcudart.so.13"
fi
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$@"
