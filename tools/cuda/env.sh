# shellcheck shell=bash
# Source this file to get the environment for building the `cuda` feature without a system CUDA toolkit:
#   . tools/cuda/env.sh        # then: cargo build --release -p xtask --features cuda
#
# It installs (once) nvcc 13.0 from NVIDIA's PyPI wheels into $SEMISEG_CUDA_SDK (default: <repo>/.cuda/sdk),
# generates link-time stub libraries for libcuda/cublas/curand/nvrtc/cudnn/nccl (no GPU or driver needed to
# build; the real libraries are loaded on the GPU machine), and exports CUDA_ROOT, PATH, CUDA_COMPUTE_CAP, ...
# A machine with a real CUDA 13.0 toolkit can skip this file and set CUDA_COMPUTE_CAP only (or let
# nvidia-smi report it).
#
# CUDA 13.0 is pinned on purpose: the PTX that nvcc 13.0 writes (ISA 9.0) is what driver 580 (CUDA 13.0)
# accepts; nvcc 13.5 writes ISA 9.5, which that driver refuses, and cudarc 0.19 does not know 13.5.

_semiseg_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SEMISEG_CUDA_SDK="${SEMISEG_CUDA_SDK:-$_semiseg_root/.cuda/sdk}"
export CUDA_ROOT="$SEMISEG_CUDA_SDK/nvidia/cu13"

if [ ! -x "$CUDA_ROOT/bin/nvcc" ]; then
  echo "semiseg: installing nvcc 13.0 wheels into $SEMISEG_CUDA_SDK (~104 MB download)" >&2
  "${PYTHON:-python3}" -m pip install -q --no-deps --target "$SEMISEG_CUDA_SDK" \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 || return 1 2>/dev/null || exit 1
fi
# candle-kernels links -lcudart; the runtime wheel has only the versioned name.
[ -e "$CUDA_ROOT/lib/libcudart.so" ] || ln -sf libcudart.so.13 "$CUDA_ROOT/lib/libcudart.so"

if [ ! -e "$CUDA_ROOT/lib/stubs/libcuda.so" ]; then
  (cd "$_semiseg_root" && cargo fetch -q) || return 1 2>/dev/null || exit 1
  _cudarc_src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10 2>/dev/null | head -n 1)"
  if [ -z "$_cudarc_src" ]; then
    echo "semiseg: cudarc-0.19.10 sources not found under \$CARGO_HOME/registry/src" >&2
    return 1 2>/dev/null || exit 1
  fi
  bash "$_semiseg_root/tools/cuda/gen-cuda-stubs.sh" "$_cudarc_src" "$CUDA_ROOT/lib/stubs" || return 1 2>/dev/null || exit 1
fi

export CUDA_HOME="$CUDA_ROOT"
case ":$PATH:" in *":$CUDA_ROOT/bin:"*) ;; *) export PATH="$CUDA_ROOT/bin:$PATH" ;; esac
# No GPU to ask: 90 = H100/H200 (cudaforge turns it into sm_90a for candle's kernels; ours use sm_90).
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
export LIBRARY_PATH="$CUDA_ROOT/lib:$CUDA_ROOT/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-${CARGO_BUILD_JOBS:-2}}"
unset _semiseg_root _cudarc_src
