"""The `onnxq` command line. Thin: every subcommand calls the Python API and formats its result."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from onnxq import __version__
from onnxq.errors import OnnxqError


def _version_text() -> str:
    import onnxruntime as ort

    lines = [f"onnxq {__version__}", f"onnxruntime {ort.__version__}"]
    try:
        from onnxq import _kernels, ep

        lines.append(f"EP library {ep.library_path()}")
        lines.append(f"CPU features {_kernels.cpu_features() or '(baseline x86-64)'}")
    except (ImportError, OnnxqError) as e:
        lines.append(f"EP library not available: {e}")
    return "\n".join(lines)


def _parse_dims(items: Sequence[str]) -> dict[str, int]:
    dims: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise OnnxqError(f"--dim expects NAME=INT (for example batch=8), got '{item}'")
        dims[name] = int(value)
    return dims


def _write_json(path: str, payload: dict) -> None:
    from onnxq.reporting import write_text_atomic

    write_text_atomic(Path(path), json.dumps(payload, indent=2) + "\n")


def cmd_inspect(args: argparse.Namespace) -> int:
    from onnxq.inspect import format_report, inspect_model

    report = inspect_model(args.model, with_ep=not args.no_ep)
    print(format_report(report))
    if args.json:
        _write_json(args.json, report.to_dict())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from onnxq.run import format_run_report, run_model

    inputs = None
    if args.inputs:
        try:
            data = np.load(args.inputs, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise OnnxqError(f"{args.inputs}: cannot read inputs ({e}); expected an .npz keyed by input name") from e
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise OnnxqError(f"{args.inputs}: is a single array; expected an .npz keyed by input name")
        with data:
            inputs = {k: data[k] for k in data.files}
    dims = _parse_dims(args.dim)
    report = run_model(args.model, inputs=inputs, dims=dims, runs=args.runs, threads=args.threads)
    print(format_run_report(report))
    if args.json:
        _write_json(args.json, report.to_dict())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from onnxq.bench import PROTOCOL_KN, PROTOCOL_M, VARIANTS, BenchConfig, markdown, run_bench, write_outputs

    def parse_kn(text: str) -> tuple[int, int]:
        k, sep, n = text.lower().partition("x")
        if not sep or not k.isdigit() or not n.isdigit():
            raise OnnxqError(f"--kn expects KxN (for example 768x3072), got '{text}'")
        return int(k), int(n)

    bad = [v for v in args.variants or [] if v not in VARIANTS]
    if bad:
        raise OnnxqError(f"unknown variant(s) {bad}; choose from {', '.join(VARIANTS)}")
    if any(t < 1 for t in args.threads or []):
        raise OnnxqError("--threads must be >= 1")
    cfg = BenchConfig(
        ms=args.m or (PROTOCOL_M if not args.quick else (1, 128)),
        kns=[parse_kn(x) for x in args.kn] if args.kn else (PROTOCOL_KN if not args.quick else ((768, 768),)),
        threads=args.threads or (1, 2),
        variants=args.variants or VARIANTS,
        passes=args.passes if args.passes else (7 if not args.quick else 3),
    )
    out = Path(args.out)
    if not out.parent.exists():
        raise OnnxqError(f"{out}: parent directory does not exist")
    report = run_bench(cfg, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    paths = write_outputs(report, out)
    print(markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="onnxq",
        description="Quantize ONNX models (FP8 / INT8 / block-sparse) and run them fast with the onnxq "
        "execution provider for ONNX Runtime.",
    )
    p.add_argument("--version", action=_VersionAction)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    pi = sub.add_parser("inspect", help="ops, weight bytes by dtype, opsets, and what the onnxq EP claims",
                        description="Summarize a model: ops and counts, initializer bytes by dtype, opsets, "
                        "inputs/outputs, and which nodes the onnxq EP claims in a real session.")
    pi.add_argument("model", help="path to an .onnx file")
    pi.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    pi.add_argument("--no-ep", action="store_true", help="skip opening an onnxq EP session")
    pi.set_defaults(func=cmd_inspect)

    pr = sub.add_parser("run", help="run a model with the onnxq EP and stock onnxruntime, compare outputs and time",
                        description="Run MODEL with the onnxq EP (CPU provider as fallback) and with stock "
                        "onnxruntime on the same inputs; print what the EP claimed, the largest output "
                        "difference, and median latencies from interleaved runs.")
    pr.add_argument("model", help="path to an .onnx file")
    pr.add_argument("--inputs", metavar="NPZ", help="inputs as .npz keyed by input name (default: seeded random)")
    pr.add_argument("--dim", action="append", default=[], metavar="NAME=INT",
                    help="value for a symbolic input dimension, e.g. --dim batch=8 (default 1; '*=N' for all)")
    pr.add_argument("--runs", type=int, default=20, help="timed runs per provider (default 20; 0 skips timing)")
    pr.add_argument("--threads", type=int, default=1, help="intra-op threads for both sessions (default 1)")
    pr.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    pr.set_defaults(func=cmd_run)

    pb = sub.add_parser("bench", help="single-node MatMul benchmark: onnxq EP vs stock onnxruntime (JSON/md/PNG)",
                        description="Benchmark single-MatMul models (FP32, INT8 Q/DQ, FP8 Q/DQ weight-only and "
                        "weights+activations) with the onnxq EP and stock onnxruntime in one process, interleaved "
                        "passes, IOBinding, 1 and 2 threads; writes bench_matmul.{json,md,png} to --out.")
    pb.add_argument("--out", default="bench_out", help="output directory (default bench_out)")
    pb.add_argument("--m", type=int, action="append", help="rows M (repeatable; default 1 32 128 512)")
    pb.add_argument("--kn", action="append", help="KxN weight shape (repeatable; default the BERT-base shapes)")
    pb.add_argument("--threads", type=int, action="append", help="thread counts (repeatable; default 1 and 2)")
    pb.add_argument("--variants", nargs="+", help="subset of: " + " ".join(
        ("ort-fp32", "ort-int8", "onnxq-int8", "ort-fp8w", "onnxq-fp8w", "ort-fp8", "onnxq-fp8")))
    pb.add_argument("--passes", type=int, help="interleaved passes (default 7)")
    pb.add_argument("--quick", action="store_true", help="a small subset (M 1 and 128, 768x768, 3 passes)")
    pb.set_defaults(func=cmd_bench)
    return p


class _VersionAction(argparse.Action):
    """--version: onnxq, onnxruntime, the EP library and CPU features (imports onnxruntime only when asked)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show versions, the EP library path and CPU features, then exit")

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        print(_version_text())
        parser.exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except OnnxqError as e:
        print(f"onnxq: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("onnxq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
