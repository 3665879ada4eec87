"""Run the huggingtweets benchmark (the same as `huggingtweets bench`, plus the levers).

    .venv/bin/python benchmarks/bench.py --quick --json test-artifacts/bench-quick.json   # ~3 minutes
    .venv/bin/python benchmarks/bench.py --json test-artifacts/bench.json                 # ~19 minutes
    .venv/bin/python benchmarks/bench.py --levers-only --json test-artifacts/levers.json  # ~30 minutes
    .venv/bin/python benchmarks/bench.py --gpu --json test-artifacts/bench-gpu.json       # the GPU check, < 8 minutes

The markdown table goes to stdout, progress to stderr. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import sys

from huggingtweets.errors import HuggingTweetsError


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="source to benchmark on (default: the real archive in ../shared, replies kept)")
    p.add_argument("--base-model", default=None, help="hub id or model folder (default: the embedded SmolLM2-135M)")
    p.add_argument("--quick", action="store_true", help="a short run (about 3 minutes)")
    p.add_argument("--levers", action="store_true", help="also measure the levers (rank, layers, block size, threads, compile, KV cache)")
    p.add_argument("--levers-only", action="store_true", help="only the matmul peak and the levers")
    p.add_argument("--gpu", action="store_true", help="only the GPU check, < 8 minutes (one line and exit 0 without a CUDA GPU)")
    p.add_argument("--json", dest="json_out", default=None, help="write the results to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    from huggingtweets.bench import main as bench

    try:
        return bench(parse(argv))
    except HuggingTweetsError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
