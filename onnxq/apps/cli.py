"""The `onnxq` command line. Thin: every subcommand calls the Python API and formats its result."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from onnxq.core.errors import OnnxqError
from onnxq.core.version import __version__


def _version_text() -> str:
    import onnxruntime as ort

    lines = [f"onnxq {__version__}", f"onnxruntime {ort.__version__}"]
    try:
        from onnxq import _kernels, ep

        devices = ep.ep_devices()
        ep_version = devices[0].ep_metadata.get("onnxq_version", "?") if devices else "?"
        agree = "" if ep_version == __version__ else f" (DIFFERS from the package's {__version__}: reinstall onnxq)"
        lines.append(f"EP library {ep.library_path()}, version {ep_version}{agree}")
        from onnxq.cpu import ISA_ENV, cpu_model

        level, top = _kernels.isa_level(), _kernels.detected_isa_level()
        lines.append(f"CPU {cpu_model()}")
        lines.append(f"CPU features {_kernels.cpu_features() or '(baseline x86-64)'}")
        lines.append(f"ISA level {level}" + (f" (capped by {ISA_ENV}; this CPU supports {top})" if level != top else
                                            f" (this CPU's highest; cap with {ISA_ENV}=scalar|avx2|...)"))
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


def _check_output_path(path: str) -> None:
    """Fail before any work if `path` cannot be an output file (so an error never follows a written model)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise OnnxqError(f"{p}: is a directory; give a file name")
    if not parent.is_dir():
        raise OnnxqError(f"{p}: directory {parent} does not exist")


def _write_json(path: str, payload: dict) -> None:
    from onnxq.core.atomic_write import write_text_atomic

    write_text_atomic(Path(path), json.dumps(payload, indent=2) + "\n")


def cmd_inspect(args: argparse.Namespace) -> int:
    from onnxq.apps.inspect import format_report, inspect_model

    report = inspect_model(args.model, with_ep=not args.no_ep)
    print(format_report(report))
    if args.json:
        _write_json(args.json, report.to_dict())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from onnxq.apps.run import format_run_report, run_model

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
    from onnxq.apps.bench import PROTOCOL_KN, PROTOCOL_M, VARIANTS, BenchConfig, markdown, run_bench, write_outputs

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


def _split_list(items: Sequence[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for item in items or []:
        out += [x.strip() for x in item.split(",") if x.strip()]
    return tuple(out)


def cmd_quantize(args: argparse.Namespace) -> int:
    from onnxq.core.config import RECIPES, QuantConfig
    from onnxq.pipeline.api import quantize

    recipe = args.recipe or args.format or "fp8-e4m3"
    if recipe not in RECIPES:
        raise OnnxqError(f"unknown recipe '{recipe}'; choose from {', '.join(RECIPES)}")
    overrides: dict[str, object] = {
        "format": args.format,
        "calibration_method": args.method,
        "percentile": args.percentile,
        "calibration_max_samples": args.max_samples,
        "calibration_memory_mb": args.calib_memory_mb,
        "accuracy_target": args.accuracy_target,
        "accuracy_metric": args.accuracy_metric,
        "accuracy_samples": args.accuracy_samples,
        "smooth_alpha": args.smooth,
    }
    if args.per_tensor:
        overrides["weight_granularity"] = "per-tensor"
    if args.weight_only:
        overrides["quantize_activations"] = False
    if args.no_activation_matmuls:
        overrides["activation_matmuls"] = False
    if args.op_types:
        overrides["op_types"] = _split_list(args.op_types)
    if args.extra_op_types:
        overrides["extra_activation_op_types"] = _split_list(args.extra_op_types)
    if args.exclude:
        overrides["exclude"] = tuple(args.exclude)  # not split on commas: regexes have {m,n}
    if args.exclude_op_types:
        overrides["exclude_op_types"] = _split_list(args.exclude_op_types)
    if args.external_data:
        overrides["external_data"] = True
    overrides["progress"] = not args.no_progress
    cfg = QuantConfig.from_recipe(recipe, **overrides)
    sparse = None
    if args.sparsity is not None:
        from onnxq.core.config import SparsifyConfig, parse_block

        if not 0 < args.sparsity < 1:
            raise OnnxqError(f"--sparsity must be in (0, 1), got {args.sparsity}")
        sparse = SparsifyConfig(sparsity=args.sparsity, block=parse_block(args.block), reconstruct=args.reconstruct,
                                progress=not args.no_progress)
    elif args.reconstruct:
        raise OnnxqError("--reconstruct needs --sparsity (it reconstructs the weights pruning keeps)")
    if args.synthetic_calibration and args.data:
        raise OnnxqError("give either --data or --synthetic-calibration, not both")
    if args.synthetic_calibration:
        print("onnxq: warning: SYNTHETIC calibration (random inputs): for speed work only, never for an accuracy "
              "claim", file=sys.stderr)
    data = list(args.data) if args.data else None
    if data is not None and len(data) == 1:
        data = data[0]
    if args.report:
        _check_output_path(args.report)
    report = quantize(args.model, args.output, cfg, data, synthetic_samples=args.synthetic_calibration or 0,
                      synthetic_dims=_parse_dims(args.dim), sparsify=sparse)
    print(format_quant_report(report))
    if args.report:
        _write_json(args.report, report.to_dict())
    return 0


def format_quant_report(r) -> str:  # type: ignore[no-untyped-def]
    mb = 1 / 2**20
    ratio = r.weight_bytes_after / r.weight_bytes_before if r.weight_bytes_before else 1.0
    calib = ("none (weight-only)" if not r.calibration_samples else
             f"{r.calibration_method}, {r.calibration_samples} batch(es)"
             + (" SYNTHETIC - not for accuracy claims" if r.synthetic_calibration else ""))
    lines = [f"wrote     {r.output}" if r.output else "wrote     (nothing: no output path)",
             f"format    {r.format} (recipe {r.recipe})",
             f"calibrate {calib}",
             f"quantized {r.layers_quantized} layers: {r.weights_quantized} weights, "
             f"{r.activations_quantized} activation inputs",
             f"weights   {r.weight_bytes_before * mb:.2f} MiB -> {r.weight_bytes_after * mb:.2f} MiB ({ratio:.1%})"]
    if r.accuracy_before is not None:
        lines.append(f"accuracy  {r.config['accuracy_metric']} {r.accuracy_before:.6g} fully quantized -> "
                     f"{r.accuracy_after:.6g} with {len(r.fallbacks)} layer(s) in float "
                     f"(target {r.config['accuracy_target']:g})")
        for f in r.fallbacks:
            lines.append(f"  float   {f['layer']} ({f['op_type']}): {f['reason']}")
    skipped = [(k, v) for k, v in r.skipped.items() if v != "kept in float for accuracy"]
    if skipped:
        lines.append(f"skipped   {len(skipped)} node(s) left in float, e.g.:")
        lines += [f"  {k}: {v}" for k, v in skipped[:8]]
    if r.sparsity:
        sp = r.sparsity
        if sp["pruned_weights"]:
            lines.append(f"pruned    {sp['pruned_weights']} weights to {sp['overall_sparsity']:.1%} block sparsity")
        if sp["packed_weights"]:
            lines.append(f"packed    {sp['packed_weights']} weights: {sp['packed_bytes_ratio']:.1%} of their "
                         "dense bytes")
    lines += [f"warning   {w}" for w in r.warnings]
    lines += [f"note      {n}" for n in r.notes]
    lines.append(f"time      {r.seconds:.1f} s")
    return "\n".join(lines)


def cmd_sparsify(args: argparse.Namespace) -> int:
    from onnxq.core.config import SparsifyConfig, parse_block
    from onnxq.core.model_io import load_model
    from onnxq.pipeline.api import sparsify

    if not 0.0 <= args.sparsity < 1.0:
        raise OnnxqError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if args.pack_only and args.no_pack:
        raise OnnxqError("give either --pack-only or --no-pack, not both")
    cfg = SparsifyConfig(
        sparsity=0.0 if args.pack_only else args.sparsity,
        block=parse_block(args.block),
        scope=args.scope,
        exclude=tuple(args.exclude or ()),
        min_elements=args.min_elements,
        pack=not args.no_pack,
        min_pack_sparsity=args.min_pack_sparsity,
        reconstruct=args.reconstruct,
        damp=args.damp,
        sequential=not args.one_pass,
        dense_target=not args.layer_target,
        calibration_max_samples=args.max_samples,
        calibration_memory_mb=args.memory_mb,
        progress=not args.no_progress,
    )
    if args.reconstruct and not args.data:
        raise OnnxqError("--reconstruct needs calibration data: --data calib.npz (or a directory of .npz files)")
    if args.data and not args.reconstruct:
        raise OnnxqError("--data is only used with --reconstruct (magnitude pruning needs no data)")
    if args.reconstruct and args.pack_only:
        raise OnnxqError("--pack-only prunes nothing, so there is nothing to reconstruct; drop --reconstruct")
    _check_output_path(args.output)
    data = (list(args.data) if len(args.data) > 1 else args.data[0]) if args.data else None
    result = sparsify(load_model(args.model), args.output, cfg, data=data)
    lines = [f"wrote     {args.output}"]
    if result.prune.weights:
        how = " with reconstruction" if result.reconstruct else ""
        lines.append(f"pruned    {len(result.prune.weights)} weights in {cfg.block[0]}x{cfg.block[1]} blocks{how}, "
                     f"{result.prune.overall_sparsity:.1%} of their values ({cfg.scope})")
        errs = {r.initializer: r for r in result.reconstruct.weights} if result.reconstruct else {}
        for w in result.prune.weights[: args.top]:
            e = errs.get(w.initializer)
            tail = f"  calibration error {e.error_magnitude:.4f} -> {e.error:.4f}" if e else ""
            lines.append(f"  {w.initializer}: {w.shape[0]}x{w.shape[1]} {w.sparsity:.1%}{tail}")
        if result.reconstruct:
            r = result.reconstruct
            lines.append(f"reconstr  {r.samples} feeds ({r.rows} rows), {r.waves} pass(es) over the data, "
                         f"{r.seconds:.1f} s; error = |X(W - W')|^2 / |XW|^2 per layer, magnitude -> reconstructed")
    if result.pack.packed:
        lines.append(f"packed    {len(result.pack.packed)} weights: {result.pack.bytes_ratio:.1%} of their dense bytes")
    elif cfg.pack:
        lines.append("packed    nothing (no weight reached --min-pack-sparsity)")
    skipped = {**result.pack.skipped, **result.prune.skipped}  # pruning's reason wins (e.g. "excluded")
    if skipped:
        lines.append(f"skipped   {len(skipped)}, e.g.: " + "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:4]))
    print("\n".join(lines))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from onnxq.apps.compare import compare_models, format_compare
    from onnxq.calibration.data import iter_feeds, model_inputs, synthetic_feeds
    from onnxq.core.model_io import load_model

    if not args.data and not args.synthetic:
        raise OnnxqError("compare needs --data (.npz feeds) or --synthetic N (random inputs, labelled as such)")
    ref = load_model(args.reference)
    quant = load_model(args.quantized)
    if args.data:
        src = list(args.data) if len(args.data) > 1 else args.data[0]
        feeds = iter_feeds(src)
    else:
        feeds = iter_feeds(synthetic_feeds(model_inputs(ref), args.synthetic, _parse_dims(args.dim)))
    tick = None
    if not args.no_progress:
        from onnxq.pipeline.api import tqdm_progress

        tick = tqdm_progress("comparing", args.max_samples)
    report = compare_models(ref, quant, feeds, layers=not args.no_layers, max_samples=args.max_samples,
                            memory_mb=args.memory_mb, progress=tick, runtime=args.runtime)
    report.reference, report.quantized = args.reference, args.quantized
    if args.synthetic:
        report.notes.append("SYNTHETIC inputs: a smoke check, not an accuracy claim")
    print(format_compare(report, top=args.top))
    if args.json:
        _write_json(args.json, report.to_dict())
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    """`onnxq zoo list` / `onnxq zoo run`: the model zoo pipeline (onnxq/apps/zoo, docs/zoo.md)."""
    from onnxq.apps.zoo import recipes as zrecipes
    from onnxq.apps.zoo import registry

    if args.zoo_cmd == "list":
        print(f"{'model':<22} {'family':<10} {'task':<15} {'ready':<6} description")
        for e in registry.MODELS.values():
            missing = e.missing()
            print(f"{e.name:<22} {e.family:<10} {e.task:<15} {'no' if missing else 'yes':<6} {e.description}"
                  + (f" [{e.install_hint()}]" if missing else ""))
        print("\ngroups: " + "; ".join(f"{g} = {' '.join(m)}" for g, m in registry.GROUPS.items() if g != "all"))
        print("\nrecipes (fp32 is always run as the baseline):")
        for r in zrecipes.RECIPES.values():
            print(f"  {r.name:<22} {r.description}")
        return 0
    if args.zoo_cmd != "run":
        raise OnnxqError("usage: onnxq zoo {run,list}")
    from onnxq.apps.zoo.pipeline import DEFAULT_CACHE, ZooSettings, run_zoo

    settings = ZooSettings(out=Path(args.out), cache=Path(args.cache or DEFAULT_CACHE),
                           recipes=tuple(args.recipes or zrecipes.DEFAULT_RECIPES), eval_size=args.eval_size,
                           bench_passes=args.bench_passes, bench_reps=args.bench_reps, threads=args.threads,
                           benchmark=not args.no_bench, force=args.force, progress=not args.no_progress)
    executor = args.executor or ("serial" if args.jobs == 1 else "process")
    result = run_zoo(args.models, settings, executor=executor, jobs=args.jobs)
    failed = [m["model"] for m in result.models if m["status"] == "failed"]
    print(f"zoo: {len(result.models)} model(s), {len(failed)} failed" + (f" ({', '.join(failed)})" if failed else ""))
    print("wrote " + ", ".join(result.paths.values()))
    if failed:  # the report says why; the exit status says that something did not run
        print(f"onnxq: error: {len(failed)} of {len(result.models)} zoo model(s) failed; see the report",
              file=sys.stderr)
        return 1
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

    from onnxq.core.config import FORMATS, RECIPES

    pq = sub.add_parser(
        "quantize", help="quantize a model to FP8 (E4M3FN / E5M2) or INT8 Q/DQ, calibrated on your data",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Quantize IN.onnx and write OUT.onnx (atomically; IN is never modified). Weights are stored "
        "pre-quantized (1 byte each, per-output-channel scales); activations get QuantizeLinear -> "
        "DequantizeLinear with calibrated per-tensor scales. The output is standard ONNX (opset 21) that stock "
        "onnxruntime runs and the onnxq EP accelerates.",
        epilog="recipes (defaults that the options override):\n"
        "  fp8-e4m3              FP8 E4M3FN weights + activations on MatMul/Gemm/Conv inputs (attention too),\n"
        "                        embedding tables FP8; Softmax/LayerNorm/residuals float (default)\n"
        "  fp8-e4m3-weight-only  FP8 weights only; activations stay float (no calibration data needed)\n"
        "  fp8-e5m2, fp8-e5m2-weight-only   the same in E5M2\n"
        "  fp8-e4m3-wide         also Q/DQ on the inputs of Add/Mul/Div/Sub/LayerNormalization (FP8 study)\n"
        "  int8                  s8 per-channel weights x u8 per-tensor activations, percentile 99.999,\n"
        "                        SmoothQuant alpha 0.8\n"
        "  int8-conservative     int8 but attention's activation x activation MatMuls stay float\n\n"
        "example:\n  onnxq quantize model.onnx -o model.fp8.onnx --format fp8-e4m3 --data calib/ --method mse")
    pq.add_argument("model", help="input .onnx (external data beside it is read)")
    pq.add_argument("-o", "--output", required=True, help="output .onnx (weights over 2 GiB go to OUT.data)")
    pq.add_argument("--format", choices=FORMATS, help="numeric format (default: the recipe's; fp8-e4m3)")
    pq.add_argument("--recipe", choices=list(RECIPES), help="named defaults (default: the --format's name)")
    pq.add_argument("--data", nargs="+", metavar="NPZ|DIR",
                    help="calibration data: .npz files (one feed dict each, arrays keyed by input name) or a "
                    "directory of them")
    pq.add_argument("--synthetic-calibration", type=int, metavar="N",
                    help="calibrate on N batches of RANDOM inputs instead of --data: for speed work only, never "
                    "for an accuracy claim (the report says so)")
    pq.add_argument("--dim", action="append", default=[], metavar="NAME=INT",
                    help="symbolic input dims for --synthetic-calibration, e.g. --dim batch=8 --dim seq=128")
    pq.add_argument("--method", choices=("minmax", "percentile", "entropy", "mse"),
                    help="activation calibration method (default: the recipe's)")
    pq.add_argument("--percentile", type=float, help="percentile for --method percentile (default 99.999)")
    pq.add_argument("--max-samples", type=int, metavar="N", help="use at most N calibration feeds")
    pq.add_argument("--calib-memory-mb", type=float, metavar="MB",
                    help="most activation bytes one calibration run may return (default 1024): tensors are split "
                    "into groups when a batch's activations do not fit")
    pq.add_argument("--smooth", type=float, metavar="ALPHA",
                    help="SmoothQuant: move per-channel activation outliers into the weights with strength ALPHA in "
                    "(0, 1); 0 turns it off (default: the recipe's; int8 recipes 0.8)")
    pq.add_argument("--per-tensor", action="store_true", help="one scale per weight tensor (default per channel)")
    pq.add_argument("--weight-only", action="store_true", help="quantize weights only (no calibration needed)")
    pq.add_argument("--no-activation-matmuls", action="store_true",
                    help="leave activation x activation MatMuls (attention scores / context) in float")
    pq.add_argument("--op-types", action="append", metavar="OPS",
                    help="ops to quantize, comma-separated (default MatMul,Gemm,Conv,Gather)")
    pq.add_argument("--extra-op-types", action="append", metavar="OPS",
                    help="also Q/DQ the float inputs of these ops, e.g. Add,Mul (wider coverage)")
    pq.add_argument("--exclude", action="append", metavar="NAMES",
                    help="a node name or regular expression (full match) to keep in float; repeatable, e.g. "
                    "--exclude '/encoder/layer.0/.*' --exclude embed")
    pq.add_argument("--exclude-op-types", action="append", metavar="OPS", help="op types to keep in float")
    pq.add_argument("--accuracy-target", type=float, metavar="T",
                    help="keep the most sensitive layers in float until the output fidelity on the calibration "
                    "data reaches T (mean output cosine, e.g. 0.999; or dB with --accuracy-metric sqnr); the report "
                    "lists which layers fell back and why")
    pq.add_argument("--accuracy-metric", choices=("cosine", "sqnr"), help="metric for --accuracy-target")
    pq.add_argument("--accuracy-samples", type=int, metavar="N", help="feeds used by the accuracy search (8)")
    pq.add_argument("--sparsity", type=float, metavar="S",
                    help="also prune MatMul/Gemm weights to block sparsity S in (0, 1) first and pack the quantized "
                    "sparse weights at the end (one command for `onnxq sparsify --no-pack`, quantize, "
                    "`onnxq sparsify --pack-only`)")
    pq.add_argument("--block", default="4x1", metavar="KxN", help="pruning block for --sparsity (default 4x1)")
    pq.add_argument("--reconstruct", action="store_true",
                    help="with --sparsity: update the kept weights from --data (OBS / SparseGPT-style)")
    pq.add_argument("--external-data", action="store_true", help="write weights to OUT.onnx.data even when small")
    pq.add_argument("--report", metavar="FILE", help="also write the quantization report as JSON")
    pq.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    pq.set_defaults(func=cmd_quantize)

    pc = sub.add_parser(
        "compare", help="per-layer SQNR and output cosine of a quantized model against its float original",
        description="Run REFERENCE (float, stock onnxruntime) and QUANTIZED (the onnxq EP, as it is deployed; "
        "--runtime onnxruntime for stock onnxruntime alone) on the same data and report, per model output, SQNR "
        "(dB), cosine, mean row cosine (rows = last axis, e.g. one embedding each) and max |error|; and per layer "
        "(tensors both models share by name: MatMul/Gemm/Conv/Gather/Softmax/LayerNorm/Add outputs, computed by "
        "stock onnxruntime) the accumulated SQNR and cosine, lowest first.")
    pc.add_argument("reference", help="the float .onnx")
    pc.add_argument("quantized", help="the quantized .onnx")
    pc.add_argument("--data", nargs="+", metavar="NPZ|DIR", help=".npz feeds (or a directory of them)")
    pc.add_argument("--synthetic", type=int, metavar="N", help="N batches of random inputs (smoke check only)")
    pc.add_argument("--dim", action="append", default=[], metavar="NAME=INT", help="symbolic dims for --synthetic")
    pc.add_argument("--max-samples", type=int, metavar="N", help="use at most N feeds")
    pc.add_argument("--memory-mb", type=float, default=1024.0, help="activation bytes per run, both models (1024)")
    pc.add_argument("--no-layers", action="store_true", help="outputs only")
    pc.add_argument("--runtime", choices=("onnxq", "onnxruntime"), default="onnxq",
                    help="what runs the quantized model's outputs: the onnxq EP with onnxruntime's CPU provider "
                    "(default; exact INT8 on every CPU) or stock onnxruntime alone (its AVX2 INT8 kernel saturates)")
    pc.add_argument("--top", type=int, default=15, help="layers to print (lowest SQNR first; JSON has all)")
    pc.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    pc.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    pc.set_defaults(func=cmd_compare)

    ps = sub.add_parser(
        "sparsify", help="block-prune MatMul/Gemm weights and pack them in the compact block-sparse format",
        description="Prune MatMul/Gemm weights (float, or int8/FP8 behind DequantizeLinear) in whole KxN blocks by "
        "magnitude (or, with --reconstruct --data, OBS/SparseGPT-style with the kept float weights updated from "
        "calibration data), then store each sufficiently sparse weight compactly (blocks + indices) behind a "
        "com.onnxq BlockSparseExpand node whose ONNX function lets stock onnxruntime run the file; the onnxq EP "
        "runs INT8 4x1 blocks with its sparse kernel. Works before or after `onnxq quantize`.")
    ps.add_argument("model", help="input .onnx (float or quantized)")
    ps.add_argument("-o", "--output", required=True, help="output .onnx")
    ps.add_argument("--sparsity", type=float, default=0.9, help="share of blocks to zero (default 0.9)")
    ps.add_argument("--block", default="4x1", help="block shape KxN (default 4x1: four consecutive K of a column)")
    ps.add_argument("--scope", choices=("per-layer", "global"), default="per-layer",
                    help="per-layer: every layer to --sparsity (default); global: one magnitude threshold")
    ps.add_argument("--exclude", action="append", metavar="PATTERN",
                    help="node name or regular expression (full match) to keep dense; repeatable")
    ps.add_argument("--min-elements", type=int, default=4096, help="leave smaller weights dense (default 4096)")
    ps.add_argument("--no-pack", action="store_true", help="only zero the blocks (quantize or fine-tune next)")
    ps.add_argument("--pack-only", action="store_true", help="prune nothing; pack weights that are already sparse")
    ps.add_argument("--min-pack-sparsity", type=float, default=0.5,
                    help="pack a weight only if this share of its blocks is zero (default 0.5)")
    ps.add_argument("--top", type=int, default=10, help="weights to list (default 10)")
    pr = ps.add_argument_group(
        "reconstruction", "OBS / SparseGPT-style: choose the pruned blocks by their effect on each layer's output "
        "and update the kept weights to reproduce the layer's outputs on calibration data (float weights only: "
        "reconstruct before `onnxq quantize`)")
    pr.add_argument("--reconstruct", action="store_true", help="reconstruct the kept weights (needs --data)")
    pr.add_argument("--data", nargs="+", metavar="NPZ|DIR",
                    help="calibration feeds: .npz files keyed by input name, or a directory of them")
    pr.add_argument("--damp", type=float, default=0.01,
                    help="add this share of the mean diagonal of X^T X to its diagonal (default 0.01)")
    pr.add_argument("--one-pass", action="store_true",
                    help="collect every layer's inputs from the dense model in one pass (faster; default: layer by "
                    "layer from the already-pruned model)")
    pr.add_argument("--layer-target", action="store_true",
                    help="fit each layer's own dense weights on the pruned model's inputs, as SparseGPT does "
                    "(default: fit the dense model's outputs of that layer, which also corrects earlier layers' "
                    "errors at the cost of running the dense model too)")
    pr.add_argument("--max-samples", type=int, metavar="N", help="use at most N feeds")
    pr.add_argument("--memory-mb", type=float, default=1024.0, help="activation bytes per onnxruntime run (1024)")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    ps.set_defaults(func=cmd_sparsify)

    pz = sub.add_parser("zoo", help="model zoo: export, convert, evaluate and benchmark many models in one command",
                        description="Export models to ONNX, apply recipes (FP32, INT8, FP8, block-sparse), evaluate "
                        "them on offline data and time stock onnxruntime against the onnxq EP; resumable, parallel.")
    zsub = pz.add_subparsers(dest="zoo_cmd", metavar="{run,list}")
    zsub.add_parser("list", help="models, groups and recipes")
    zr = zsub.add_parser("run", help="run the pipeline and write OUT/zoo.md, zoo.json and PNG plots")
    zr.add_argument("--models", nargs="+", metavar="NAME", help="models, groups (ci, real, config, vision, default, "
                    "all) or .onnx paths (default: default)")
    zr.add_argument("--recipes", nargs="+", metavar="NAME", help="zoo recipes (default: fp32 int8 fp8-e4m3 fp8-e5m2 "
                    "int8-bs4x1-50 int8-bs4x1-80); fp32 always runs")
    zr.add_argument("--out", required=True, help="output directory (models, manifest, report)")
    zr.add_argument("--cache", help="export cache (default ~/.cache/onnxq/zoo)")
    zr.add_argument("--jobs", type=int, default=1, help="models in parallel (default 1)")
    zr.add_argument("--executor", choices=("serial", "process", "ray"), default=None,
                    help="serial (default with --jobs 1), process (default otherwise) or ray")
    zr.add_argument("--eval-size", choices=("small", "full"), default="small", help="evaluation set size")
    zr.add_argument("--threads", type=int, default=1, help="threads per session (default 1)")
    zr.add_argument("--bench-passes", type=int, default=3, help="interleaved benchmark passes (default 3)")
    zr.add_argument("--bench-reps", type=int, default=3, help="runs per pass (default 3)")
    zr.add_argument("--no-bench", action="store_true", help="skip the benchmark step")
    zr.add_argument("--force", action="store_true", help="rerun steps the manifest says are done")
    zr.add_argument("--no-progress", action="store_true", help="no progress display")
    pz.set_defaults(func=cmd_zoo, zoo_cmd=None)
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
    except BrokenPipeError:  # `onnxq ... | head`: the reader left; say nothing more
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the interpreter flushes stdout at exit
        except OSError:
            pass
        return 141


if __name__ == "__main__":
    sys.exit(main())
