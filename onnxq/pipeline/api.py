"""The Python entry points (the CLI calls these too): ``onnxq.quantize`` and ``onnxq.sparsify``. Both load the
model, pick a recipe (``onnxq.pipeline.recipes``), run it over one pass context and write the result
atomically; the input (file or object) is never modified."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import onnx

from onnxq.calibration.data import DataSource
from onnxq.core.config import QuantConfig, SparsifyConfig
from onnxq.core.errors import OnnxqError
from onnxq.core.model_io import load_model, save_model
from onnxq.passes.context import PassContext
from onnxq.pipeline.recipes import recipe_for
from onnxq.pipeline.reports import QuantReport, SparsifyResult, quant_report
from onnxq.pipeline.runner import run_recipe


def tqdm_progress(desc: str, total: int | None) -> Callable[[int], None]:
    """A tqdm bar on stderr (only when stderr is a terminal: logs get no carriage-return debris); returns its
    update function."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="layer" if desc == "sensitivity" else "batch", file=sys.stderr,
               leave=False, dynamic_ncols=True, disable=None)
    return bar.update


def quantize(model_or_path: onnx.ModelProto | str | os.PathLike[str], output_path: str | os.PathLike[str] | None,
             config: QuantConfig | None = None, calibration_data: DataSource | None = None, *,
             synthetic_samples: int = 0, synthetic_dims: dict[str, int] | None = None,
             sparsify: SparsifyConfig | None = None) -> QuantReport:
    """Quantize a model and (if ``output_path``) write it atomically.

    ``calibration_data``: a directory of ``.npz`` files, one ``.npz``, a list of them, or any iterable of feed
    dicts (arrays keyed by input name). ``synthetic_samples`` > 0 with no data calibrates on random inputs —
    for speed work only, flagged in the report. ``sparsify``: prune first (and pack the quantized weights at
    the end) in the same run. A packed float sparse model is quantized and packed again. The report's ``model``
    holds the quantized ``ModelProto``.
    """
    t0 = time.perf_counter()
    config = config or QuantConfig()
    config.validate()
    if sparsify is not None:
        sparsify.validate(calibration_data is not None)
    model = _load(model_or_path, output_path)
    ctx = PassContext(quant=config, sparse=sparsify, data=calibration_data, synthetic_samples=synthetic_samples,
                      synthetic_dims=synthetic_dims,
                      progress=tqdm_progress if config.progress or (sparsify and sparsify.progress) else None)
    out = run_recipe(model, recipe_for(True, sparsify), ctx)
    report = quant_report(ctx, config, model, out, time.perf_counter() - t0)
    if output_path is not None:
        save_model(out, output_path, external_data=config.external_data)
        report.output = os.fspath(output_path)
    return report


def sparsify(model: onnx.ModelProto | str | os.PathLike[str], output_path: str | os.PathLike[str] | None = None,
             config: SparsifyConfig | None = None, data: DataSource | None = None) -> SparsifyResult:
    """Prune (and with ``config.reconstruct`` reconstruct from ``data``), then pack; write ``output_path``
    atomically if given. ``data`` takes the forms ``onnxq.quantize`` takes. Order with quantization is free:
    prune a float model without packing (``pack=False``), quantize it, then pack (``sparsity=0``: nothing more
    is pruned, the existing zero blocks are packed); quantize first and sparsify the quantized model; or do it
    all in one run with ``onnxq.quantize(..., sparsify=SparsifyConfig(...))``."""
    cfg = config or SparsifyConfig()
    cfg.validate(data is not None)
    if not cfg.reconstruct and data is not None:
        raise OnnxqError("calibration data is only used with reconstruct=True (--reconstruct); magnitude pruning "
                         "needs none")
    m = _load(model, output_path)
    ctx = PassContext(sparse=cfg, data=data,
                      progress=tqdm_progress if cfg.progress else None)
    out = run_recipe(m, recipe_for(False, cfg), ctx)
    result = SparsifyResult(model=out, notes=list(ctx.notes))
    result.prune = ctx.reports.get("prune", result.prune)
    result.pack = ctx.reports.get("pack", result.pack)
    result.reconstruct = ctx.reports.get("reconstruct")
    if output_path is not None:
        save_model(out, output_path)
    return result


def _load(model_or_path: onnx.ModelProto | str | os.PathLike[str],
          output_path: str | os.PathLike[str] | None) -> onnx.ModelProto:
    if isinstance(model_or_path, onnx.ModelProto):
        model = model_or_path
    else:
        model = load_model(model_or_path)
        if output_path is not None and _same_file(model_or_path, output_path):
            raise OnnxqError(f"{output_path}: is the input model; write the result to another path "
                             "(the input is never modified)")
    if output_path is not None:
        out = Path(output_path)
        if out.is_dir():
            raise OnnxqError(f"{out}: is a directory; give a file name for the output model")
        if not (out.parent if str(out.parent) else Path(".")).is_dir():
            raise OnnxqError(f"{out}: directory {out.parent} does not exist")
    return model


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False
