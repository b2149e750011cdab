#!/usr/bin/env bash
# The GPU measurements of stacked seeds, in one run: bench perf --seeds for vanilla (16 seeds) and
# dcgan (8 seeds), each with and without --cuda-graphs for the separate runs. Writes one perf JSON
# record per measurement into $OUT (default results/perf), named after the GPU; ROUNDS (default 3) sets the
# rounds of each, for a GPU lent for only a few minutes.
# Usage, from the repository root on a machine with a CUDA GPU: bash results/perf/measure-gpu.sh
set -euo pipefail
out=${OUT:-results/perf}
rounds=${ROUNDS:-3}
mkdir -p "$out"
# The model's name, "h100" of "NVIDIA H100 80GB HBM3", "a100" of "NVIDIA A100-SXM4-80GB".
gpu=$(python3 -c "import re, torch; print(re.search(r'[A-Za-z]*\d{2,}', torch.cuda.get_device_name())[0].lower())")
for graphs in "" "--cuda-graphs"; do
    suffix=${graphs:+-graphs}
    python3 -m bench perf --arch vanilla --seeds 16 --device cuda $graphs --rounds "$rounds" --batches 200 \
        --json "$out/$gpu-vanilla-seeds16$suffix.json"
    python3 -m bench perf --arch dcgan --seeds 8 --device cuda $graphs --rounds "$rounds" --batches 50 \
        --json "$out/$gpu-dcgan-seeds8$suffix.json"
done
