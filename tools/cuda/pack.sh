#!/usr/bin/env bash
# Bundles CUDA-built binaries for a GPU machine that has no Rust (see README "GPU"):
#   tools/cuda/pack.sh [OUT_DIR] [BINARY...]      # default: target/gpu-bundle, target/release/xtask
# Each binary is stripped and xz-compressed (the ~42 MB xtask becomes ~5 MB); `run.sh` in the bundle unpacks
# them and runs one with the CUDA libraries of the machine's PyTorch wheels on LD_LIBRARY_PATH:
#   ./run.sh xtask bench --compare-pytorch --device cuda --cases unimatch-r101-321-b8
# Test binaries: `tools/build-cuda.sh test --release -p core-seg --features nccl --no-run` prints their paths.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-target/gpu-bundle}"
shift || true
[ $# -gt 0 ] || set -- target/release/xtask
mkdir -p "$out"
for bin in "$@"; do
  name="$(basename "$bin" | sed 's/-[0-9a-f]\{16\}$//')"
  strip -o "$out/$name" "$bin"
  xz -6 -f -T1 "$out/$name"
  echo "$out/$name.xz ($(du -h "$out/$name.xz" | cut -f1))"
done
cp tools/cuda/run.sh "$out/run.sh"
chmod +x "$out/run.sh"
