#!/usr/bin/env bash
# The GPU measurements of stacked seeds, in one run: bench perf --seeds for vanilla (16 seeds) and
# dcgan (8 seeds), each with and without --cuda-graphs for the separate runs. Writes one perf JSON
# record per measurement into $OUT (default results/perf), named after the GPU.
# Usage, from the repository root on a machine with a CUDA GPU: bash results/perf/measure-gpu.sh
set -euo pipefail
out=${OUT:-results/perf}
mkdir -p "$out"
gpu=$(python -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower())")
for graphs in "" "--cuda-graphs"; do
    suffix=${graphs:+-graphs}
    python -m bench perf --arch vanilla --seeds 16 --device cuda $graphs --rounds 3 --batches 200 \
        --json "$out/$gpu-vanilla-seeds16$suffix.json"
    python -m bench perf --arch dcgan --seeds 8 --device cuda $graphs --rounds 3 --batches 50 \
        --json "$out/$gpu-dcgan-seeds8$suffix.json"
done
