"""`lmrl bench` from a checkout: `python benchmarks/bench.py [--quick] [--threads N]` (see lmrl/bench)."""

import sys

from lmrl.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
