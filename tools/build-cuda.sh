#!/usr/bin/env bash
# Builds the CUDA variant of the command line without a system CUDA toolkit (see README, "GPU").
#   tools/build-cuda.sh                                  # cargo build --release -p xtask --features cuda
#   tools/build-cuda.sh --features cuda,cudnn,nccl       # extra cargo arguments replace the feature list
#   tools/build-cuda.sh test --release -p core-seg --features cuda --no-run
# The binary is target/release/xtask; tools/cuda/pack.sh bundles it for a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=cuda/env.sh
. tools/cuda/env.sh
if [ $# -eq 0 ]; then
  set -- build --release -p xtask --features cuda
elif [ "${1#-}" != "$1" ]; then
  set -- build --release -p xtask "$@"
fi
echo "+ cargo $*" >&2
exec cargo "$@"
