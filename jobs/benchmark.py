"""The performance benchmark: `python -m jobs.benchmark [--quick] [--device cpu|cuda] [--out benchmark.json]`.

Runs every comparison of benchmarks/ in this process, writes the JSON results and prints a Markdown table.
"""
from __future__ import annotations

import sys

from benchmarks import main

if __name__ == "__main__":
    sys.exit(main())
