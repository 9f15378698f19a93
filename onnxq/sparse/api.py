"""`onnxq.sparsify`: block pruning and packing as one call (the CLI's `onnxq sparsify` is a thin layer on it).

    onnxq.sparsify("model.int8.onnx", "model.int8.sparse.onnx", onnxq.SparsifyConfig(sparsity=0.9))

Order with quantization is free: prune a float model without packing (``pack=False``), quantize it, then pack
(``sparsity=0``: nothing more is pruned, the existing zero blocks are packed); or quantize first and sparsify the
quantized model in one go.

With ``reconstruct=True`` and calibration ``data`` the kept weights of float models are updated OBS /
SparseGPT-style to reproduce each layer's calibration outputs (``onnxq.passes.reconstruct_sparse``):

    onnxq.sparsify("model.onnx", "model.sparse.onnx", onnxq.SparsifyConfig(sparsity=0.7, reconstruct=True),
                   data="calib.npz")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import onnx

from onnxq.calibration.data import DataSource, iter_feeds, model_inputs, validate_feed
from onnxq.errors import OnnxqError
from onnxq.model_io import load_model, save_model
from onnxq.passes.pack_sparse import PackReport, pack_sparse
from onnxq.passes.prune_blocks import PruneConfig, PruneReport, prune_blocks
from onnxq.passes.reconstruct_sparse import ReconstructConfig, ReconstructReport, reconstruct_sparse


@dataclass
class SparsifyConfig:
    sparsity: float = 0.9
    block: tuple[int, int] = (4, 1)
    scope: str = "per-layer"  # each layer to `sparsity`; "global": one threshold (may empty whole layers)
    exclude: tuple[str, ...] = ()
    op_types: tuple[str, ...] = ("MatMul", "Gemm")
    min_elements: int = 4096
    pack: bool = True
    min_pack_sparsity: float = 0.5  # pack a weight only if at least this share of its blocks is zero
    reconstruct: bool = False  # OBS / SparseGPT-style update of the kept weights from calibration data
    damp: float = 0.01  # reconstruction: share of the mean diagonal of X^T X added to its diagonal
    sequential: bool = True  # reconstruction: each layer sees the activations of the already-pruned earlier ones
    dense_target: bool = True  # reconstruction, sequential: fit the dense model's layer outputs, not W on X_pruned
    batch_rows: int = 128  # reconstruction: lazy batch along K (mask chosen per batch, a multiple of the block K)
    calibration_max_samples: int | None = None  # use at most this many feeds (None: all)
    calibration_memory_mb: float = 1024.0  # activation bytes one onnxruntime run may return
    progress: bool = False  # a progress bar on stderr during reconstruction


@dataclass
class SparsifyResult:
    model: onnx.ModelProto
    prune: PruneReport = field(default_factory=PruneReport)
    pack: PackReport = field(default_factory=PackReport)
    reconstruct: ReconstructReport | None = None  # with reconstruct=True: per-layer calibration errors, time


def parse_block(text: str) -> tuple[int, int]:
    k, sep, n = text.lower().partition("x")
    if not sep or not k.isdigit() or not n.isdigit() or int(k) < 1 or int(n) < 1:
        raise OnnxqError(f"block must be KxN with positive integers (for example 4x1), got '{text}'")
    return int(k), int(n)


def _load_feeds(model: onnx.ModelProto, data: DataSource, max_samples: int | None) -> list[dict]:
    """Validated calibration feeds, kept in memory (inputs only: reconstruction passes over them once per wave)."""
    inputs = model_inputs(model)
    feeds = []
    for label, raw in iter_feeds(data):
        if max_samples is not None and len(feeds) >= max_samples:
            break
        feeds.append(validate_feed(label, raw, inputs))
    if not feeds:
        raise OnnxqError("calibration data is empty: give at least one feed (an .npz keyed by input name)")
    return feeds


def sparsify(model: onnx.ModelProto | str | os.PathLike[str], output_path: str | os.PathLike[str] | None = None,
             config: SparsifyConfig | None = None, data: DataSource | None = None) -> SparsifyResult:
    """Prune (and with ``config.reconstruct`` reconstruct from ``data``), then pack; write ``output_path``
    atomically if given. ``data`` takes the forms ``onnxq.quantize`` takes: a directory of ``.npz`` files, one
    ``.npz``, a list of them, a feed dict or an iterable of feed dicts. The input model is never modified."""
    cfg = config or SparsifyConfig()
    if cfg.reconstruct:
        if data is None:
            raise OnnxqError("reconstruction needs calibration data: pass data= (an .npz keyed by input name, a "
                             "directory of them or an iterable of feed dicts); on the command line --data calib.npz")
        if cfg.sparsity <= 0:
            raise OnnxqError("reconstruction needs sparsity > 0 (with sparsity 0 nothing is pruned)")
        if cfg.calibration_max_samples is not None and cfg.calibration_max_samples < 1:
            raise OnnxqError("calibration_max_samples must be >= 1")
        if cfg.calibration_memory_mb <= 0:
            raise OnnxqError("calibration_memory_mb must be > 0")
    elif data is not None:
        raise OnnxqError("calibration data is only used with reconstruct=True (--reconstruct); magnitude pruning "
                         "needs none")
    m = model if isinstance(model, onnx.ModelProto) else load_model(model)
    result = SparsifyResult(model=m)
    if cfg.sparsity > 0:
        pcfg = PruneConfig(cfg.sparsity, cfg.block, cfg.scope, tuple(cfg.exclude), tuple(cfg.op_types),
                           cfg.min_elements)
        if cfg.reconstruct:
            feeds = _load_feeds(m, data, cfg.calibration_max_samples)  # type: ignore[arg-type]
            progress = None
            if cfg.progress:
                from onnxq.quantizer.api import tqdm_progress

                progress = tqdm_progress
            pruned, result.prune, result.reconstruct = reconstruct_sparse(
                m, pcfg, ReconstructConfig(cfg.damp, cfg.sequential, cfg.batch_rows, cfg.calibration_memory_mb,
                                     cfg.dense_target),
                feeds, progress)
        else:
            pruned, result.prune = prune_blocks(m, pcfg)
        if not result.prune.weights:
            raise OnnxqError("no weight could be pruned: " + (
                "; ".join(f"{k}: {v}" for k, v in list(result.prune.skipped.items())[:5]) or "no MatMul/Gemm weights"))
        result.model = pruned
    if cfg.pack:
        result.model, result.pack = pack_sparse(result.model, cfg.block, cfg.min_pack_sparsity)
    onnx.checker.check_model(result.model, full_check=True)
    if output_path is not None:
        save_model(result.model, output_path)
    return result
