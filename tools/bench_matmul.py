#!/usr/bin/env python3
"""Single-node MatMul benchmark by the team protocol (see onnxq/apps/bench.py); same as `onnxq bench`.

    python tools/bench_matmul.py --out docs/bench            # full protocol (~10 minutes on 2 cores)
    python tools/bench_matmul.py --quick --out /tmp/bench    # a smoke subset
"""

import sys

from onnxq.apps.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
