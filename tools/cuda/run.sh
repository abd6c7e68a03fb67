#!/usr/bin/env bash
# Runs a bundled binary (tools/cuda/pack.sh) on a GPU machine: `./run.sh NAME [ARGS...]`.
# The binary links libcudart.so.13, libcublas(Lt).so.13, libcurand.so.10 (+ libcudnn.so.9, libnccl.so.2 with
# those features); they are taken from the nvidia-* wheels of $PYTHON (default python3, e.g. PyTorch's venv).
# libcuda.so.1 comes from the driver. PTX is ISA 9.0 (nvcc 13.0): driver ≥ 580 (CUDA 13.0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
name="$1"
shift
[ -x "$here/$name" ] || { xz -dkf "$here/$name.xz" && chmod +x "$here/$name"; }
sp="$("${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
export LD_LIBRARY_PATH="$sp/nvidia/cu13/lib:$sp/nvidia/cudnn/lib:$sp/nvidia/nccl/lib:$sp/nvidia/curand/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
missing="$(ldd "$here/$name" | grep 'not found' || true)"
[ -z "$missing" ] || { echo "missing libraries:"; echo "$missing"; exit 127; } >&2
exec "$here/$name" "$@"
