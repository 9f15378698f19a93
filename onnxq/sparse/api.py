"""`onnxq.sparsify`: block pruning and packing as one call (the CLI's `onnxq sparsify` is a thin layer on it).

    onnxq.sparsify("model.int8.onnx", "model.int8.sparse.onnx", onnxq.SparsifyConfig(sparsity=0.9))

Order with quantization is free: prune a float model without packing (``pack=False``), quantize it, then pack
(``sparsity=0``: nothing more is pruned, the existing zero blocks are packed); or quantize first and sparsify the
quantized model in one go.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import onnx

from onnxq.errors import OnnxqError
from onnxq.model_io import load_model, save_model
from onnxq.passes.pack_sparse import PackReport, pack_sparse
from onnxq.passes.prune_blocks import PruneConfig, PruneReport, prune_blocks


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


@dataclass
class SparsifyResult:
    model: onnx.ModelProto
    prune: PruneReport = field(default_factory=PruneReport)
    pack: PackReport = field(default_factory=PackReport)


def parse_block(text: str) -> tuple[int, int]:
    k, sep, n = text.lower().partition("x")
    if not sep or not k.isdigit() or not n.isdigit() or int(k) < 1 or int(n) < 1:
        raise OnnxqError(f"block must be KxN with positive integers (for example 4x1), got '{text}'")
    return int(k), int(n)


def sparsify(model: onnx.ModelProto | str | os.PathLike[str], output_path: str | os.PathLike[str] | None = None,
             config: SparsifyConfig | None = None) -> SparsifyResult:
    cfg = config or SparsifyConfig()
    m = model if isinstance(model, onnx.ModelProto) else load_model(model)
    result = SparsifyResult(model=m)
    if cfg.sparsity > 0:
        pruned, result.prune = prune_blocks(m, PruneConfig(cfg.sparsity, cfg.block, cfg.scope, tuple(cfg.exclude),
                                                           tuple(cfg.op_types), cfg.min_elements))
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
