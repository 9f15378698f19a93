"""``onnxq.quantize``: the Python entry point (the CLI's ``onnxq quantize`` calls this too)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import onnx

from onnxq.calibration.data import DataSource
from onnxq.errors import OnnxqError
from onnxq.model_io import load_model, save_model
from onnxq.quantizer.config import QuantConfig
from onnxq.quantizer.pipeline import QuantReport, run_pipeline


def tqdm_progress(desc: str, total: int | None) -> Callable[[int], None]:
    """A tqdm bar on stderr (only when stderr is a terminal: logs get no carriage-return debris); returns its
    update function."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="layer" if desc == "sensitivity" else "batch", file=sys.stderr,
               leave=False, dynamic_ncols=True, disable=None)
    return bar.update


def quantize(model_or_path: onnx.ModelProto | str | os.PathLike[str], output_path: str | os.PathLike[str] | None,
             config: QuantConfig | None = None, calibration_data: DataSource | None = None, *,
             synthetic_samples: int = 0, synthetic_dims: dict[str, int] | None = None) -> QuantReport:
    """Quantize a model and (if ``output_path``) write it atomically.

    ``calibration_data``: a directory of ``.npz`` files, one ``.npz``, a list of them, or any iterable of feed
    dicts (arrays keyed by input name). ``synthetic_samples`` > 0 with no data calibrates on random inputs —
    for speed work only, flagged in the report. The input model (file or object) is never modified; the
    report's ``model`` holds the quantized ``ModelProto``.
    """
    config = config or QuantConfig()
    if isinstance(model_or_path, onnx.ModelProto):
        model = model_or_path
    else:
        model = load_model(model_or_path)
        if output_path is not None and _same_file(model_or_path, output_path):
            raise OnnxqError(f"{output_path}: is the input model; write the quantized model to another path "
                             "(the input is never modified)")
    if output_path is not None:
        out = Path(output_path)
        if out.is_dir():
            raise OnnxqError(f"{out}: is a directory; give a file name for the output model")
        if not (out.parent if str(out.parent) else Path(".")).is_dir():
            raise OnnxqError(f"{out}: directory {out.parent} does not exist")
    progress = tqdm_progress if config.progress else None
    report = run_pipeline(model, config, calibration_data, synthetic_samples=synthetic_samples,
                          synthetic_dims=synthetic_dims, progress=progress)
    if output_path is not None:
        save_model(report.model, output_path, external_data=config.external_data)  # type: ignore[arg-type]
        report.output = os.fspath(output_path)
    return report


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False
