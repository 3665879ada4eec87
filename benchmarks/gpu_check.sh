#!/usr/bin/env bash
# The GPU check (issue 21), for a reviewer with a CUDA GPU: the README's install, then `bench --gpu`, under 8 minutes.
#
#     bash benchmarks/gpu_check.sh                      # writes test-artifacts/bench-gpu.json, prints the GPU rows
#     bash benchmarks/gpu_check.sh out.json             # elsewhere
#     PYTHON=python3 bash benchmarks/gpu_check.sh       # a Python that already has huggingtweets (Colab): no install
#
# It trains the default bot on the bundled archive and records the card, the precision the defaults pick there,
# tokens/s, peak GPU memory, the race ratio and the H100 target (3,200 posts x 4 epochs <= 30 s).
# Without a GPU it prints one line and exits 0, before installing anything.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-test-artifacts/bench-gpu.json}"

# nvidia-smi comes with the driver: no driver, no CUDA GPU, and nothing worth installing for.
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no CUDA GPU on this machine (no working nvidia-smi); nothing measured, nothing written"
    exit 0
fi

py="${PYTHON:-}"
if [ -z "$py" ]; then
    # The README's install, in a venv that sees the machine's own CUDA torch: make then keeps it instead of
    # installing the CPU build it pins for machines without one.
    [ -x .venv-gpu/bin/python ] || python3 -m venv --system-site-packages .venv-gpu
    make --no-print-directory install VENV=.venv-gpu >&2
    py=.venv-gpu/bin/python
fi
exec "$py" benchmarks/bench.py --gpu --json "$out"
