"""The compact block-sparse weight format, and the ONNX function that expands it with standard ops.

A K x N weight pruned in blocks of bk (along K) x bn (along N) is stored block-column major (CSC over blocks):

    values     [nnzb, bk, bn]   the kept blocks, in the weight's own dtype (int8, FP8, float)
    block_rows int16 [nnzb]     block-row index (k // bk) of each kept block, ascending within a block column
    col_ptr    int32 [N/bn + 1] kept blocks of block column j are values[col_ptr[j]:col_ptr[j + 1]]
    shape      int64 [4]        [N/bn, K/bk, bk, bn]  (the expansion's scatter shape)
    dense      int64 [2]        [K, N]

and expanded by a `com.onnxq.BlockSparseExpand*` node whose model-local function uses only standard ops
(CumSum + ScatterElements recover each block's column from col_ptr; ScatterND places the blocks; Transpose +
Reshape give K x N), so stock onnxruntime runs the file. The onnxq EP claims the node itself and never expands
it. 4 x 1 int8 blocks at 90% sparsity take 0.1 (values) + 0.05 (2-byte block rows) of the dense bytes.

Column order (CSC) is what the sparse kernels want: each output column's blocks are contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxq.core.errors import OnnxqError

DOMAIN = "com.onnxq"
DOMAIN_VERSION = 1
FP8_TYPES = (TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2)
FUNCTION_FOR_TYPE = {
    TensorProto.FLOAT8E4M3FN: "BlockSparseExpandE4M3FN",
    TensorProto.FLOAT8E5M2: "BlockSparseExpandE5M2",
}
PLAIN_FUNCTION = "BlockSparseExpand"  # int8 / uint8 / float / float16
FUNCTION_NAMES = (PLAIN_FUNCTION, *FUNCTION_FOR_TYPE.values())
MAX_BLOCK_ROWS = 32767  # block_rows are int16


@dataclass
class BlockSparse:
    values: np.ndarray  # [nnzb, bk, bn]
    block_rows: np.ndarray  # int16 [nnzb]
    col_ptr: np.ndarray  # int32 [N/bn + 1]
    k: int
    n: int
    bk: int
    bn: int

    @property
    def nnzb(self) -> int:
        return int(self.values.shape[0])

    @property
    def sparsity(self) -> float:
        total = (self.k // self.bk) * (self.n // self.bn)
        return 1.0 - self.nnzb / total if total else 0.0

    def nbytes(self) -> int:
        return self.values.nbytes + self.block_rows.nbytes + self.col_ptr.nbytes + 6 * 8

    def validate(self) -> None:
        """Everything a reader relies on; a file that fails this is rejected, never read past its ends."""
        kb, nb = self.k // self.bk, self.n // self.bn
        if self.k % self.bk or self.n % self.bn:
            raise OnnxqError(f"block {self.bk}x{self.bn} does not tile the {self.k}x{self.n} weight")
        if self.values.ndim != 3 or self.values.shape[1:] != (self.bk, self.bn):
            raise OnnxqError(f"values must be [nnzb, {self.bk}, {self.bn}], got {list(self.values.shape)}")
        if self.block_rows.shape != (self.nnzb,) or self.col_ptr.shape != (nb + 1,):
            raise OnnxqError("block_rows / col_ptr lengths do not match the values and the weight shape")
        if self.col_ptr[0] != 0 or self.col_ptr[-1] != self.nnzb or np.any(np.diff(self.col_ptr) < 0):
            raise OnnxqError("col_ptr must start at 0, end at the block count and never decrease")
        if self.nnzb and (self.block_rows.min() < 0 or self.block_rows.max() >= kb):
            raise OnnxqError(f"block row index out of range [0, {kb})")
        for j in range(nb):  # the EP's kernels rely on ascending rows within a column (ValidateBlockSparse)
            rows = self.block_rows[self.col_ptr[j]:self.col_ptr[j + 1]]
            if rows.size > 1 and np.any(np.diff(rows.astype(np.int64)) <= 0):
                raise OnnxqError(f"block rows of column {j} are not strictly ascending")

    def to_dense(self) -> np.ndarray:
        self.validate()
        kb, nb = self.k // self.bk, self.n // self.bn
        blocks = np.zeros((nb, kb, self.bk, self.bn), self.values.dtype)
        cols = np.repeat(np.arange(nb), np.diff(self.col_ptr))
        blocks[cols, self.block_rows.astype(np.int64)] = self.values
        return blocks.transpose(1, 2, 0, 3).reshape(self.k, self.n)


def from_dense(w: np.ndarray, bk: int, bn: int) -> BlockSparse:
    """Keep exactly the blocks that hold any nonzero value."""
    k, n = w.shape
    if k % bk or n % bn:
        raise OnnxqError(f"block {bk}x{bn} does not tile the {k}x{n} weight")
    if k // bk > MAX_BLOCK_ROWS:
        raise OnnxqError(f"K/{bk} = {k // bk} block rows exceed the int16 index ({MAX_BLOCK_ROWS})")
    blocks = w.reshape(k // bk, bk, n // bn, bn).transpose(2, 0, 1, 3)  # [nb, kb, bk, bn]
    nz = blocks.reshape(n // bn, k // bk, -1)
    keep = np.any(nz.view(np.uint8).reshape(*nz.shape[:2], -1) != 0, axis=2) if w.dtype.itemsize == 1 else \
        np.any(nz != 0, axis=2)
    cols, rows = np.nonzero(keep)  # column-major order: nonzero returns rows of `keep` (block columns) first
    values = blocks[cols, rows]
    col_ptr = np.zeros(n // bn + 1, np.int32)
    np.cumsum(np.bincount(cols, minlength=n // bn), out=col_ptr[1:])
    return BlockSparse(np.ascontiguousarray(values), rows.astype(np.int16), col_ptr, k, n, bk, bn)


# ---------------------------------------------------------------------------------------------- ONNX side


def _expand_body(fp8_type: int | None) -> list[onnx.NodeProto]:
    """Standard-op body: values, block_rows, col_ptr, shape, dense -> weight (K x N)."""
    mk = helper.make_node
    nodes = []
    v = "values"
    if fp8_type is not None:  # ScatterND has no FP8: scatter the exactly-representable float16 copy
        nodes.append(mk("Cast", ["values"], ["v16"], to=TensorProto.FLOAT16))
        v = "v16"
    nodes += [
        # column of each block: count the column starts at or before it (col_ptr[1:nb] scattered, then CumSum)
        mk("Constant", [], ["one"], value=numpy_helper.from_array(np.array([1], np.int64))),
        mk("Constant", [], ["zero1"], value=numpy_helper.from_array(np.array([0], np.int64))),
        mk("Constant", [], ["minus1"], value=numpy_helper.from_array(np.array([-1], np.int64))),
        mk("Constant", [], ["zero_s"], value=numpy_helper.from_array(np.array(0, np.int64))),
        mk("Cast", ["col_ptr"], ["cp64"], to=TensorProto.INT64),
        mk("Slice", ["cp64", "one", "minus1"], ["starts"]),  # col_ptr[1:nb]
        mk("Shape", [v], ["vshape"]),
        mk("Slice", ["vshape", "zero1", "one"], ["nnzb"]),
        mk("Add", ["nnzb", "one"], ["nnzb1"]),
        mk("ConstantOfShape", ["nnzb1"], ["marks0"], value=numpy_helper.from_array(np.array([0], np.int64))),
        mk("Shape", ["starts"], ["nstarts"]),
        mk("ConstantOfShape", ["nstarts"], ["ones"], value=numpy_helper.from_array(np.array([1], np.int64))),
        mk("ScatterElements", ["marks0", "starts", "ones"], ["marks"], axis=0, reduction="add"),
        mk("CumSum", ["marks", "zero_s"], ["csum"]),
        mk("Slice", ["csum", "zero1", "nnzb"], ["cols"]),
        mk("Cast", ["block_rows"], ["rows"], to=TensorProto.INT64),
        mk("Unsqueeze", ["cols", "minus1"], ["cols2"]),
        mk("Unsqueeze", ["rows", "minus1"], ["rows2"]),
        mk("Concat", ["cols2", "rows2"], ["idx"], axis=-1),
        mk("ConstantOfShape", ["shape"], ["zf"]),
        mk("CastLike", ["zf", v], ["zeros"]),
        mk("ScatterND", ["zeros", "idx", v], ["blocks"]),
        mk("Transpose", ["blocks"], ["blocks_t"], perm=[1, 2, 0, 3]),
    ]
    if fp8_type is None:
        nodes.append(mk("Reshape", ["blocks_t", "dense"], ["weight"]))
    else:
        nodes.append(mk("Reshape", ["blocks_t", "dense"], ["w16"]))
        nodes.append(mk("Cast", ["w16"], ["weight"], to=fp8_type))
    return nodes


def expand_functions(opset: int) -> list[onnx.FunctionProto]:
    funcs = []
    for name, fp8 in ((PLAIN_FUNCTION, None), *((n, t) for t, n in FUNCTION_FOR_TYPE.items())):
        funcs.append(helper.make_function(
            DOMAIN, name, ["values", "block_rows", "col_ptr", "shape", "dense"], ["weight"], _expand_body(fp8),
            opset_imports=[helper.make_opsetid("", opset)],
        ))
    return funcs


def function_name_for(dtype: int) -> str:
    return FUNCTION_FOR_TYPE.get(dtype, PLAIN_FUNCTION)


def initializers(bs: BlockSparse, prefix: str, onnx_dtype: int) -> list[onnx.TensorProto]:
    """The five initializers of one compact weight (`onnx_dtype` is the values' element type)."""
    if onnx_dtype in FP8_TYPES:
        raw = np.ascontiguousarray(bs.values).view(np.uint8)
        vals = helper.make_tensor(f"{prefix}.values", onnx_dtype, list(bs.values.shape), raw.tobytes(), raw=True)
    else:
        vals = numpy_helper.from_array(np.ascontiguousarray(bs.values), f"{prefix}.values")
    return [
        vals,
        numpy_helper.from_array(bs.block_rows.astype(np.int16), f"{prefix}.block_rows"),
        numpy_helper.from_array(bs.col_ptr.astype(np.int32), f"{prefix}.col_ptr"),
        numpy_helper.from_array(np.array([bs.n // bs.bn, bs.k // bs.bk, bs.bk, bs.bn], np.int64), f"{prefix}.shape"),
        numpy_helper.from_array(np.array([bs.k, bs.n], np.int64), f"{prefix}.dense"),
    ]


def expand_node(prefix: str, output: str, onnx_dtype: int) -> onnx.NodeProto:
    ins = [f"{prefix}.{s}" for s in ("values", "block_rows", "col_ptr", "shape", "dense")]
    return helper.make_node(function_name_for(onnx_dtype), ins, [output], name=f"{prefix}/BlockSparseExpand",
                            domain=DOMAIN)


def ensure_functions(model: onnx.ModelProto) -> None:
    """Add the domain import and the expansion functions (once) to a model that uses them."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 21)
    if not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
    have = {(f.domain, f.name) for f in model.functions}
    for f in expand_functions(max(opset, 21)):
        if (f.domain, f.name) not in have:
            model.functions.append(f)
