"""Run every CPU benchmark in turn; each writes its JSON to bench/results/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "bench_synthetic.py",
    "bench_converters.py",
    "bench_metrics.py",
    "bench_search.py",
    "bench_retriever.py",
    "bench_llm_witness.py",
    "bench_interactive.py",
    "bench_attribute_net.py",
]


def main() -> int:
    failed = []
    for script in BENCHMARKS:
        print(f"== {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)], cwd=HERE.parent).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
