#!/usr/bin/env python3
"""Block-sparse INT8 MatMul benchmark: the onnxq sparse kernel vs stock onnxruntime's dense INT8, the onnxq dense
kernel and (optionally) DeepSparse 1.8 (INT8 in the MatMulInteger form it accelerates, and FP32, on the same pruned
weights), at 70/80/90/95% 4x1 block sparsity (see onnxq/apps/bench_sparse.py and onnxq/apps/bench_deepsparse.py).

    python tools/bench_sparse.py --out docs/bench                       # without DeepSparse
    python3 -m venv /tmp/dsenv && /tmp/dsenv/bin/pip install deepsparse==1.8.0
    python tools/bench_sparse.py --out docs/bench --deepsparse-python /tmp/dsenv/bin/python
    python tools/bench_sparse.py --out docs/bench --stem deepsparse_sparse --deepsparse-python /tmp/dsenv/bin/python \
        --shape 128x768x3072 --sparsity 0.9 --quick
"""

import argparse
import sys
from pathlib import Path

from onnxq.apps.bench_sparse import SHAPES, SPARSITIES, SparseBenchConfig, markdown, run_sparse_bench, write_outputs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out")
    ap.add_argument("--deepsparse-python", help="python of a virtualenv with deepsparse==1.8.0")
    ap.add_argument("--threads", type=int, action="append", help="thread counts (default 1)")
    ap.add_argument("--sparsity", type=float, action="append", help="sparsities (default 0.7 0.8 0.9 0.95)")
    ap.add_argument("--no-deepsparse-fp32", action="store_true",
                    help="with --deepsparse-python: skip DeepSparse's FP32 path")
    ap.add_argument("--deepsparse-per-tensor", action="store_true",
                    help="with --deepsparse-python: also DeepSparse INT8 on the weights requantized per tensor "
                         "(same zeros; its fastest form, ~10%% faster than the exact per-channel one)")
    ap.add_argument("--shape", action="append", metavar="MxKxN", help="shapes (default: the four BERT-base ones)")
    ap.add_argument("--stem", default="bench_sparse", help="output file names (STEM.json, STEM.md, STEM.png)")
    ap.add_argument("--passes", type=int, help="interleaved passes (default 7, 3 with --quick)")
    ap.add_argument("--quick", action="store_true", help="one shape (unless --shape), 3 passes")
    args = ap.parse_args()
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shape] if args.shape else \
        (SHAPES[:1] if args.quick else SHAPES)
    if any(len(s) != 3 for s in shapes):
        ap.error("--shape takes MxKxN, e.g. 128x768x3072")
    cfg = SparseBenchConfig(
        shapes=shapes,
        sparsities=args.sparsity or SPARSITIES,
        threads=args.threads or (1,),
        passes=args.passes or (3 if args.quick else 7),
        deepsparse_python=args.deepsparse_python,
        deepsparse_fp32=not args.no_deepsparse_fp32,
        deepsparse_per_tensor=args.deepsparse_per_tensor,
    )
    report = run_sparse_bench(cfg, progress=lambda s: print(s, file=sys.stderr, flush=True))
    paths = write_outputs(report, Path(args.out), args.stem)
    print(markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
