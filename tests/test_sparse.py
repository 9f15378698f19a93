"""Block-sparse weights: the compact format, its ONNX function on stock onnxruntime, pruning and packing passes,
the sparse kernels (bit-exact against the dense integer path on the same pruned weights) and the EP."""

from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _stock import STOCK_INT8_SATURATES_REASON, stock_int8_saturates, stock_session
from onnx import TensorProto, helper, numpy_helper

import onnxq
import onnxq.ep as ep
from onnxq import _kernels
from onnxq.apps.model_builders import int8_qdq_static, qdq_matmul_model, sample_inputs, tiny_encoder_model
from onnxq.core import block_sparse as fmt
from onnxq.core.errors import OnnxqError
from onnxq.cpu import isa_at_least

EP = ep.EP_NAME
pytestmark = [pytest.mark.every_isa, pytest.mark.usefixtures("fp8_kernel_everywhere")]


def _has_vnni() -> bool:  # at test time: the ISA ceiling (conftest's isa_level) may hide it
    return isa_at_least("avx512vnni")


def _int8_sparse_kernels() -> list[str]:  # variants of PackedSpmmU8S8 under the ISA ceiling in force now
    return ["ref"] + (["avx2"] if isa_at_least("avx2") else []) + (["avx512vnni"] if _has_vnni() else [])


def _fp8_sparse_kernels() -> list[str]:  # variants of PackedSpmmBf16 under the ISA ceiling in force now
    return ["ref"] + (["avx2"] if isa_at_least("avx2") else []) + (["avx512bf16"] if isa_at_least("avx512bf16") else [])


def _random_block_sparse(k, n, bk, bn, sparsity, dtype=np.int8, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.int8:
        w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    else:
        w = rng.standard_normal((k, n)).astype(dtype)
    keep = rng.random((k // bk, n // bn)) >= sparsity
    mask = np.repeat(np.repeat(keep, bk, 0), bn, 1)
    return np.where(mask, w, np.zeros_like(w))


# ------------------------------------------------------------------------------------------------ format


@pytest.mark.parametrize("bk,bn", [(4, 1), (1, 16), (2, 2), (8, 4)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
def test_format_round_trip(bk, bn, sparsity):
    w = _random_block_sparse(32, 48, bk, bn, sparsity, seed=bk * 10 + bn)
    bs = fmt.from_dense(w, bk, bn)
    bs.validate()
    np.testing.assert_array_equal(bs.to_dense(), w)
    assert bs.block_rows.dtype == np.int16 and bs.col_ptr.dtype == np.int32


def test_format_bytes_at_90_percent_4x1_int8():
    w = _random_block_sparse(768, 768, 4, 1, 0.9)
    bs = fmt.from_dense(w, 4, 1)
    assert bs.nbytes() <= 0.16 * w.nbytes  # values 10% + 2-byte block rows 5% (+ col_ptr)


@pytest.mark.parametrize("corrupt", ["row_high", "row_negative", "ptr_decreasing", "ptr_end", "ptr_length"])
def test_format_validate_rejects_hostile_indices(corrupt):
    bs = fmt.from_dense(_random_block_sparse(16, 8, 4, 1, 0.5), 4, 1)
    if corrupt == "row_high":
        bs.block_rows[0] = 4
    elif corrupt == "row_negative":
        bs.block_rows[0] = -1
    elif corrupt == "ptr_decreasing":
        bs.col_ptr[2], bs.col_ptr[3] = bs.col_ptr[3] + 1, bs.col_ptr[2]
    elif corrupt == "ptr_end":
        bs.col_ptr[-1] += 1
    else:
        bs.col_ptr = bs.col_ptr[:-1]
    with pytest.raises(OnnxqError):
        bs.validate()


def _expand_model(bs: fmt.BlockSparse, onnx_dtype: int) -> onnx.ModelProto:
    g = helper.make_graph([fmt.expand_node("w", "y", onnx_dtype)], "expand", [],
                          [helper.make_tensor_value_info("y", onnx_dtype, [bs.k, bs.n])],
                          initializer=fmt.initializers(bs, "w", onnx_dtype))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    fmt.ensure_functions(m)
    onnx.checker.check_model(m, full_check=True)
    return m


@pytest.mark.parametrize("kind", ["int8", "float", "e4m3fn", "e5m2"])
@pytest.mark.parametrize("sparsity", [0.0, 0.7, 1.0])
def test_onnx_function_expands_on_stock_onnxruntime(kind, sparsity):
    if kind == "int8":
        w, odt = _random_block_sparse(24, 16, 4, 1, sparsity), TensorProto.INT8
        stored = w
    elif kind == "float":
        w, odt = _random_block_sparse(24, 16, 4, 2, sparsity, np.float32), TensorProto.FLOAT
        stored = w
    else:
        dt = ml_dtypes.float8_e4m3fn if kind == "e4m3fn" else ml_dtypes.float8_e5m2
        w = _random_block_sparse(24, 16, 4, 1, sparsity, np.float32).astype(dt)
        odt = TensorProto.FLOAT8E4M3FN if kind == "e4m3fn" else TensorProto.FLOAT8E5M2
        stored = w.view(np.uint8)
    bs = fmt.from_dense(stored, 4, 2 if kind == "float" else 1)
    m = _expand_model(bs, odt)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    if kind in ("e4m3fn", "e5m2"):
        # FP8 outputs cannot cross into numpy: widen in the graph
        m.graph.node.append(helper.make_node("Cast", ["y"], ["yf"], to=TensorProto.FLOAT))
        m.graph.output[0].CopyFrom(helper.make_tensor_value_info("yf", TensorProto.FLOAT, [bs.k, bs.n]))
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(sess.run(None, {})[0], w.astype(np.float32))
    else:
        np.testing.assert_array_equal(sess.run(None, {})[0], w)


# ------------------------------------------------------------------------------------------------ kernels


@pytest.mark.parametrize("m,k,n", [(1, 4, 1), (5, 8, 3), (129, 64, 33), (7, 4, 70), (200, 768, 40), (3, 12, 5),
                                   (16, 40, 17), (17, 8, 19), (33, 40, 24), (64, 16, 20), (65, 12, 9), (2, 36, 40),
                                   (1, 100, 37)])
@pytest.mark.parametrize("sparsity", [0.0, 0.6, 0.95, 1.0])
def test_sparse_kernel_equals_dense_integer_path(m, k, n, sparsity):
    # m covers every token tile (16 / 32 / 64 / 128 tokens, chosen from M) and its edges
    rng = np.random.default_rng(m + k + n)
    w = _random_block_sparse(k, n, 4, 1, sparsity, seed=m)
    bs = fmt.from_dense(w, 4, 1)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    scale = rng.uniform(1e-3, 1e-2, n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    dense = _kernels.qgemm_u8s8(a, 77, w, np.zeros(1, np.int8), scale, bias, kernel="ref")
    for kernel in _int8_sparse_kernels():
        for threads in (1, 2):
            g = _kernels.PackedSpmmU8S8(bs.values, bs.block_rows, bs.col_ptr, k, n, scale, bias, kernel, threads)
            got = g(a, 77)
            np.testing.assert_array_equal(got, dense, err_msg=f"{kernel} t={threads}")


@pytest.mark.parametrize("chunk_groups", ["1", "5", "48", "250", ""])
def test_sparse_kernel_k_chunks_equal_dense(monkeypatch, chunk_groups):
    kernels = [v for v in _int8_sparse_kernels() if v != "ref"]
    if not kernels:
        pytest.skip("the chunked kernels need AVX2 or AVX512-VNNI (the reference has no K chunks)")
    # K chunking (per-weight chunk size, partial sums carried between chunks) must not change a single bit,
    # whatever the chunk size: one group, a size not dividing K/4, the L1 size, more than K/4, the density rule.
    # The AVX2 kernel walks several chunks at once in small token tiles (M = 2 .. 20 here) and its columns in
    # panels (N = 300 > the 128 columns of a 64-token panel).
    monkeypatch.setenv("ONNXQ_SPMM_CHUNK_GROUPS", chunk_groups)
    rng = np.random.default_rng(7)
    k = 1004
    for m, n in ((130, 37), (130, 300), (20, 41), (8, 9), (3, 33), (2, 5)):
        w = _random_block_sparse(k, n, 4, 1, 0.85, seed=3)
        bs = fmt.from_dense(w, 4, 1)
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        scale = rng.uniform(1e-3, 1e-2, n).astype(np.float32)
        dense = _kernels.qgemm_u8s8(a, 3, w, np.zeros(1, np.int8), scale, kernel="ref")
        for kernel in kernels:
            g = _kernels.PackedSpmmU8S8(bs.values, bs.block_rows, bs.col_ptr, k, n, scale, None, kernel, 2)
            np.testing.assert_array_equal(g(a, 3), dense, err_msg=f"{kernel} m={m} n={n}")


@pytest.mark.parametrize("m", [1, 2, 3, 8, 15, 16, 17, 33, 64, 65, 130])
@pytest.mark.parametrize("k,n", [(4, 1), (12, 7), (1004, 37)])
def test_sparse_kernels_full_range_equal_dense(m, k, n):
    # every u8 activation and every s8 weight, -128 and 255 included, at awkward shapes (token tiles of 8 / 16 /
    # 32 / 64 and their edges, the per-column small-M path, K one block, N odd): exact, so equal bit for bit
    rng = np.random.default_rng(m * 7 + k + n)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    a[0, :] = 255
    a[-1, : k // 2] = 0
    scale = rng.uniform(1e-3, 1e-2, n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    for sparsity in (0.0, 0.6, 0.95, 1.0):
        w = rng.integers(-128, 128, (k, n)).astype(np.int8)
        w[:, 0] = -128  # the worst pair for vpmaddubsw: 255 * -128 twice
        keep = rng.random((k // 4, n)) >= sparsity
        w = np.where(np.repeat(keep, 4, 0), w, np.int8(0))
        bs = fmt.from_dense(w, 4, 1)
        for zp in (0, 255, 77):
            dense = _kernels.qgemm_u8s8(a, zp, w, np.zeros(1, np.int8), scale, bias, kernel="ref")
            for kernel in _int8_sparse_kernels():
                g = _kernels.PackedSpmmU8S8(bs.values, bs.block_rows, bs.col_ptr, k, n, scale, bias, kernel, 2)
                np.testing.assert_array_equal(g(a, zp), dense, err_msg=f"{kernel} sparsity={sparsity} zp={zp}")


@pytest.mark.parametrize("m", [1, 2, 3, 7, 8, 9, 15, 16, 17, 33, 64, 65, 130])
@pytest.mark.parametrize("k", [4, 12, 16, 20, 60, 1004])
def test_avx2_token_packing_equals_reference(m, k):
    if not isa_at_least("avx2"):
        pytest.skip("the AVX2 packer needs AVX2")
    # the AVX2 sparse INT8 kernel's s16 token tiles (pad tokens 0; rows with 4 zeros for tiny M), byte for byte
    a = np.random.default_rng(m * 100 + k).integers(0, 256, (m, k), dtype=np.uint8)
    np.testing.assert_array_equal(_kernels.pack_tokens_s16(a, "avx2"), _kernels.pack_tokens_s16(a, "ref"))


@pytest.mark.parametrize("m", [2, 15, 16, 17, 33, 64, 65, 130])
@pytest.mark.parametrize("k", [4, 12, 16, 20, 60, 768])
def test_fused_quantize_into_token_tiles_equals_quantize_then_repack(m, k):
    if not _has_vnni():
        pytest.skip("the fused quantize-and-repack is part of the AVX512-VNNI sparse path")
    # the EP quantizes a float input straight into the kernel's token tiles; bytes must equal the scalar
    # QuantizeLinear on rows followed by the scalar repacking, pad tokens included, across tile / K tails,
    # with NaN, infinities, values past the u8 range and exact rounding ties in the input
    rng = np.random.default_rng(m * 1000 + k)
    scale, zp = np.float32(0.037), 131
    x = (rng.standard_normal((m, k)) * 4).astype(np.float32)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=min(flat.size, 40), replace=False)
    ties = ((rng.integers(-140, 140, picks.size) + np.float32(0.5)) * scale).astype(np.float32)
    flat[picks] = ties
    flat[picks[:4]] = np.array([np.nan, np.inf, -np.inf, 1e30], np.float32)[: min(4, picks.size)]
    ref = _kernels.quantize_pack_tokens_u8(x, scale, zp, "ref")
    np.testing.assert_array_equal(_kernels.quantize_pack_tokens_u8(x, scale, zp, "fused"), ref)


def test_sparse_kernel_variants_above_the_ceiling_are_refused():
    bs = fmt.from_dense(_random_block_sparse(16, 8, 4, 1, 0.5), 4, 1)
    w8 = _random_block_sparse(16, 8, 4, 1, 0.5, np.float32).astype(ml_dtypes.float8_e4m3fn)
    fbs = fmt.from_dense(w8.view(np.uint8), 4, 1)
    one = np.ones(8, np.float32)

    def make(family, kernel):
        if family == "int8":
            return _kernels.PackedSpmmU8S8(bs.values, bs.block_rows, bs.col_ptr, 16, 8, one, None, kernel)
        return _kernels.PackedSpmmBf16(fbs.values.reshape(-1), "e4m3fn", fbs.block_rows, fbs.col_ptr, 16, 8, one,
                                       None, kernel)

    for family, kernel, level in (("int8", "avx2", "avx2"), ("int8", "avx512vnni", "avx512vnni"),
                                  ("fp8", "avx2", "avx2"), ("fp8", "avx512bf16", "avx512bf16")):
        if isa_at_least(level):
            make(family, kernel)
        else:
            with pytest.raises(ValueError, match="not available"):
                make(family, kernel)


def test_sparse_kernel_rejects_hostile_indices():
    bs = fmt.from_dense(_random_block_sparse(16, 8, 4, 1, 0.5), 4, 1)
    rows = bs.block_rows.copy()
    rows[0] = 1000
    with pytest.raises(ValueError, match="block row"):
        _kernels.PackedSpmmU8S8(bs.values, rows, bs.col_ptr, 16, 8, np.ones(8, np.float32))
    ptr = bs.col_ptr.copy()
    ptr[-1] = 10**6
    with pytest.raises(ValueError, match="col_ptr"):
        _kernels.PackedSpmmU8S8(bs.values, bs.block_rows, ptr, 16, 8, np.ones(8, np.float32))


# ------------------------------------------------------------------------------------------------ passes / EP


@pytest.fixture(scope="module")
def int8_encoder():
    m = tiny_encoder_model(d=64, ffn=256)
    calib = [sample_inputs(m, batch=2, seq=16, seed=i) for i in range(4)]
    return m, int8_qdq_static(m, calib)


def test_prune_per_layer_hits_the_target_and_keeps_the_input(int8_encoder):
    _, q = int8_encoder
    before = q.SerializeToString()
    r = onnxq.sparsify(q, None, onnxq.SparsifyConfig(sparsity=0.8, min_elements=1024))
    assert q.SerializeToString() == before
    assert len(r.prune.weights) == 6
    for w in r.prune.weights:
        assert abs(w.sparsity - 0.8) < 0.02, w
    assert len(r.pack.packed) == 6 and r.pack.bytes_ratio < 0.4  # 0.2 values + 0.1 rows + col_ptr of small N
    ops = {n.op_type for n in r.model.graph.node}
    assert fmt.PLAIN_FUNCTION in ops


def test_global_scope_and_exclusions(int8_encoder):
    _, q = int8_encoder
    r = onnxq.sparsify(q, None, onnxq.SparsifyConfig(sparsity=0.8, scope="global", min_elements=1024,
                                                     exclude=("ffn.*",)))
    assert {w.initializer for w in r.prune.weights} == {f"attn.{p}.weight_quantized" for p in ("q", "k", "v", "out")}
    assert all(v == "excluded" for k, v in r.prune.skipped.items() if k.startswith("ffn"))
    assert abs(r.prune.overall_sparsity - 0.8) < 0.02


def test_sparse_int8_model_runs_on_stock_ort_and_the_ep_matches(int8_encoder, monkeypatch):
    m, q = int8_encoder
    r = onnxq.sparsify(q, None, onnxq.SparsifyConfig(sparsity=0.9, min_elements=1024))
    data = r.model.SerializeToString()
    x = sample_inputs(m, batch=2, seq=16, seed=9)
    ref = stock_session(data).run(None, x)[0]  # ONNX's float route (tests/_stock.py)
    outs = {}
    for mode in ("always", "never"):
        monkeypatch.setenv("ONNXQ_SPARSE", mode)
        fast = ep.session(data)
        claimed = [n.split(":")[0] for n in ep.assigned_nodes(fast).get(EP, [])]
        assert claimed.count(fmt.PLAIN_FUNCTION) == 6 and claimed.count("MatMul") == 6
        outs[mode] = fast.run(None, x)[0]
    np.testing.assert_array_equal(outs["always"], outs["never"])  # sparse kernel == dense kernel, bit for bit
    assert np.max(np.abs(outs["always"] - ref)) <= 1e-2 * np.max(np.abs(ref))  # vs ONNX's float route
    # 150 tokens: three token tiles, quantized into tiles by both threads of the pool, then columns split
    monkeypatch.setenv("ONNXQ_SPARSE", "always")
    x3 = sample_inputs(m, batch=3, seq=50, seed=10)
    by_threads = [ep.session(data, provider_options={"num_threads": str(t)}).run(None, x3)[0] for t in (1, 2)]
    monkeypatch.setenv("ONNXQ_SPARSE", "never")
    dense = ep.session(data).run(None, x3)[0]
    for got in by_threads:
        np.testing.assert_array_equal(got, dense)


def test_prune_then_quantize_then_pack_equals_quantize_then_prune():
    m = tiny_encoder_model(d=64, ffn=256)
    calib = [sample_inputs(m, batch=2, seq=16, seed=i) for i in range(4)]
    pruned = onnxq.sparsify(m, None, onnxq.SparsifyConfig(sparsity=0.75, min_elements=1024, pack=False)).model
    assert not any(n.domain == fmt.DOMAIN for n in pruned.graph.node)
    q = int8_qdq_static(pruned, calib)
    packed = onnxq.sparsify(q, None, onnxq.SparsifyConfig(sparsity=0.0)).model
    assert sum(n.op_type == fmt.PLAIN_FUNCTION for n in packed.graph.node) == 6
    x = sample_inputs(m, batch=1, seq=8, seed=3)
    a = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    b = ort.InferenceSession(packed.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    np.testing.assert_array_equal(a, b)  # packing is lossless


def _sparse_matmul_model(bs: fmt.BlockSparse, scale: np.ndarray) -> onnx.ModelProto:
    inits = fmt.initializers(bs, "w", TensorProto.INT8) + [
        numpy_helper.from_array(scale, "w_scale"), numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
        numpy_helper.from_array(np.array(128, np.uint8), "xz")]
    nodes = [fmt.expand_node("w", "wq", TensorProto.INT8),
             helper.make_node("DequantizeLinear", ["wq", "w_scale"], ["wdq"], axis=1),
             helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xdq"]),
             helper.make_node("MatMul", ["xdq", "wdq"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", bs.k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", bs.n])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    fmt.ensure_functions(m)
    return m


@pytest.mark.parametrize("corrupt", ["row_high", "ptr_end", "ptr_decreasing"])
def test_hostile_sparse_model_is_not_claimed_and_fails_cleanly(corrupt):
    w = _random_block_sparse(32, 16, 4, 1, 0.5)
    bs = fmt.from_dense(w, 4, 1)
    if corrupt == "row_high":
        bs.block_rows[1] = 30000
    elif corrupt == "ptr_end":
        bs.col_ptr[-1] = bs.col_ptr[-1] + 5
    else:
        bs.col_ptr[3] = bs.col_ptr[4] + 2
    m = _sparse_matmul_model(bs, np.full(16, 0.01, np.float32))
    x = np.ones((2, 32), np.float32)
    cpu = stock_session(m.SerializeToString())  # ONNX's float route (tests/_stock.py)
    fast = ep.session(m.SerializeToString())
    # the onnxq EP validates before claiming, so it leaves the node to onnxruntime ...
    assert fmt.PLAIN_FUNCTION not in [n.split(":")[0] for n in ep.assigned_nodes(fast).get(EP, [])]
    if corrupt == "row_high":
        # ... whose ScatterND rejects the out-of-range block with a clear error (never a wild read)
        for sess in (cpu, fast):
            with pytest.raises(Exception, match="(?i)indice|index|bound|range"):
                sess.run(None, {"x": x})
    else:
        if stock_int8_saturates():  # the EP leaves this MatMul to onnxruntime, whose INT8 kernel is then not exact
            pytest.skip(STOCK_INT8_SATURATES_REASON)
        # ... whose standard-op expansion ignores the inconsistent pointer (it is defined behaviour there), and the
        # EP session gives what ONNX's float route gives, within fp32 rounding (the EP session may take an integer
        # route for the expanded weight)
        want = cpu.run(None, {"x": x})[0]
        np.testing.assert_allclose(fast.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def _sparse_fp8_matmul_model(w: np.ndarray, rng: np.random.Generator) -> tuple[onnx.ModelProto, np.ndarray]:
    """x [m, K] float -> MatMul with the E4M3FN block-sparse weight `w` (4x1 blocks) behind a per-column DQ with
    random scales; returns the model and the scales."""
    k, n = w.shape
    bs = fmt.from_dense(w.view(np.uint8), 4, 1)
    scale = rng.uniform(0.01, 0.02, n).astype(np.float32)
    inits = fmt.initializers(bs, "w", TensorProto.FLOAT8E4M3FN) + [numpy_helper.from_array(scale, "w_scale")]
    nodes = [fmt.expand_node("w", "wq", TensorProto.FLOAT8E4M3FN),
             helper.make_node("DequantizeLinear", ["wq", "w_scale"], ["wdq"], axis=1),
             helper.make_node("MatMul", ["x", "wdq"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    fmt.ensure_functions(m)
    return m, scale


def test_sparse_fp8_model_runs_with_the_ep(fp8_kernel_everywhere):
    """FP8 block-sparse weights: the EP claims them (80% sparse: its sparse FP8 kernel where it has one)."""
    rng = np.random.default_rng(0)
    k, n = 64, 32
    w = _random_block_sparse(k, n, 4, 1, 0.8, np.float32).astype(ml_dtypes.float8_e4m3fn)
    m, scale = _sparse_fp8_matmul_model(w, rng)
    onnx.checker.check_model(m, full_check=True)
    x = rng.standard_normal((5, k)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    fast = ep.session(m.SerializeToString())
    assert "BlockSparseExpandE4M3FN" in [nd.split(":")[0] for nd in ep.assigned_nodes(fast).get(EP, [])]
    got = fast.run(None, {"x": x})[0]
    wdq = w.astype(np.float64) * scale
    bound = 2.0**-8 * (np.abs(x.astype(np.float64)) @ np.abs(wdq)) + 1e-6
    assert np.all(np.abs(got - ref) <= bound)


def test_bad_sparsify_arguments():
    m = tiny_encoder_model(d=64, ffn=256)
    with pytest.raises(OnnxqError, match="sparsity"):
        onnxq.sparsify(m, None, onnxq.SparsifyConfig(sparsity=1.5))
    with pytest.raises(OnnxqError, match="no weight"):
        onnxq.sparsify(m, None, onnxq.SparsifyConfig(sparsity=0.5, block=(5, 1)))
    from onnxq.core.config import parse_block

    assert parse_block("4x1") == (4, 1)
    with pytest.raises(OnnxqError, match="block"):
        parse_block("4by1")


def test_cli_sparsify_round_trip(tmp_path):
    from pathlib import Path

    from onnxq.apps.cli import main

    src = Path(__file__).resolve().parent.parent / "sample_models" / "tiny_encoder.int8.onnx"
    before = src.read_bytes()
    out = tmp_path / "sparse.onnx"
    assert main(["sparsify", str(src), "-o", str(out), "--sparsity", "0.8", "--min-elements", "1024",
                 "--exclude", "ffn.*"]) == 0
    assert src.read_bytes() == before
    m = onnx.load(out)
    assert sum(n.op_type == fmt.PLAIN_FUNCTION for n in m.graph.node) == 4
    assert main(["sparsify", str(src), "-o", str(tmp_path / "x.onnx"), "--block", "3x1"]) == 1
    assert not (tmp_path / "x.onnx").exists()
    assert main(["sparsify", str(src), "-o", str(tmp_path / "y.onnx"), "--sparsity", "1.5"]) == 1


@pytest.mark.parametrize("m,k,n", [(1, 4, 1), (5, 8, 3), (129, 64, 33), (200, 768, 40), (3, 200, 5), (17, 8, 19),
                                   (33, 40, 24), (64, 16, 20), (65, 12, 9), (2, 1004, 37), (4, 12, 7), (9, 1004, 301),
                                   (130, 1004, 300)])  # every token tile (8/16/32/64/128), the small-M path
@pytest.mark.parametrize("fp8", ["e4m3fn", "e5m2"])
def test_sparse_fp8_kernel_against_float64(m, k, n, fp8):
    dt = ml_dtypes.float8_e4m3fn if fp8 == "e4m3fn" else ml_dtypes.float8_e5m2
    rng = np.random.default_rng(m * 3 + k)
    w = _random_block_sparse(k, n, 4, 1, 0.8, np.float32, seed=m).astype(dt)
    bs = fmt.from_dense(w.view(np.uint8), 4, 1)
    a = rng.standard_normal((m, k)).astype(ml_dtypes.bfloat16)
    scale = rng.uniform(0.5, 2, n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    prod = a.astype(np.float64) @ w.astype(np.float64)
    exact = prod * scale + bias
    bound = (k + 2) * 2.0**-24 * (np.abs(a.astype(np.float64)) @ np.abs(w.astype(np.float64))) * scale + \
        2.0**-23 * (np.abs(prod * scale) + np.abs(exact))
    for kernel in _fp8_sparse_kernels():
        for threads in (1, 2):
            g = _kernels.PackedSpmmBf16(bs.values.reshape(-1), fp8, bs.block_rows, bs.col_ptr, k, n, scale, bias,
                                        kernel, threads)
            err = np.abs(g(a.view(np.uint16)) - exact)
            assert np.all(err <= bound), f"{kernel} t={threads}: worst {(err / bound).max():.3g}"


def test_sparse_fp8_ep_sparse_and_dense_paths_agree(monkeypatch, fp8_kernel_everywhere):
    rng = np.random.default_rng(4)
    k, n = 256, 96
    w = _random_block_sparse(k, n, 4, 1, 0.85, np.float32).astype(ml_dtypes.float8_e4m3fn)
    m, scale = _sparse_fp8_matmul_model(w, rng)
    x = rng.standard_normal((70, k)).astype(np.float32)
    outs = {}
    for mode in ("always", "never"):
        monkeypatch.setenv("ONNXQ_SPARSE", mode)
        outs[mode] = ep.session(m.SerializeToString()).run(None, {"x": x})[0]
    xa = x.astype(ml_dtypes.bfloat16).astype(np.float64)
    wdq = w.astype(np.float64) * scale
    bound = (k + 4) * 2.0**-24 * (np.abs(xa) @ np.abs(wdq)) + 1e-7
    for mode, y in outs.items():
        assert np.all(np.abs(y - xa @ wdq) <= bound), mode


@pytest.mark.parametrize("fp8", ["e4m3fn", "e5m2"])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 70])
def test_sparse_fp8_kernels_special_weights_as_the_reference(m, fp8):
    # NaN (E4M3FN, E5M2) and +-inf (E5M2) weights give NaN / inf exactly where the reference gives them; the
    # small-M path's padding (an odd last block paired with zeros) must not turn the next column's NaN into this one's
    dt = ml_dtypes.float8_e4m3fn if fp8 == "e4m3fn" else ml_dtypes.float8_e5m2
    rng = np.random.default_rng(m)
    k, n = 64, 21
    wb = _random_block_sparse(k, n, 4, 1, 0.7, np.float32, seed=m).astype(dt).view(np.uint8).copy()
    specials = [0x7F, 0xFF] if fp8 == "e4m3fn" else [0x7E, 0x7C, 0xFC]
    for j in range(0, n, 3):  # the first kept weight of every third column
        rows = np.flatnonzero(wb[:, j])
        if rows.size:
            wb[rows[0], j] = specials[(j // 3) % len(specials)]
    bs = fmt.from_dense(wb, 4, 1)
    a = rng.standard_normal((m, k)).astype(ml_dtypes.bfloat16)
    scale = np.ones(n, np.float32)
    outs = {kernel: _kernels.PackedSpmmBf16(bs.values.reshape(-1), fp8, bs.block_rows, bs.col_ptr, k, n, scale, None,
                                            kernel, 1)(a.view(np.uint16)) for kernel in _fp8_sparse_kernels()}
    ref = outs.pop("ref")
    assert np.isnan(ref).any() and (fp8 == "e4m3fn" or np.isinf(ref).any())
    finite = np.isfinite(ref)
    wf = np.where(np.isfinite(wb.view(dt).astype(np.float64)), wb.view(dt).astype(np.float64), 0.0)
    bound = (k + 2) * 2.0**-24 * (np.abs(a.astype(np.float64)) @ np.abs(wf)) + 1e-30
    for kernel, got in outs.items():
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=kernel)
        np.testing.assert_array_equal(got[np.isinf(ref)], ref[np.isinf(ref)], err_msg=kernel)
        assert np.all(np.abs(got[finite] - ref[finite]) <= 2 * bound[finite]), kernel


def _session_and_kernels(data: bytes, capfd, provider_options=None):
    """An EP session on `data` and the kernel each compiled node chose (from the EP's verbose log)."""
    so = ort.SessionOptions()
    so.log_severity_level = 0
    capfd.readouterr()
    sess = ep.session(data, so, provider_options)
    return sess, re.findall(r"with kernel (\S+)", capfd.readouterr().err)


@pytest.mark.parametrize("input_kind", ["float", "u8", "s8"])
def test_sparse_int8_ep_picks_the_isa_kernel_and_equals_the_dense_path(capfd, monkeypatch, input_kind):
    """90% 4x1-sparse INT8: the EP runs the sparse kernel of the ISA level in force (AVX2 below VNNI) and its output
    equals the dense integer kernel's bit for bit, for decode-sized and multi-tile M, on 1 and 2 threads."""
    k, n = 256, 97
    base = qdq_matmul_model(k, n, seed=5, signed_activation=input_kind == "s8",
                            include_quantize=input_kind == "float")
    r = onnxq.sparsify(base, None, onnxq.SparsifyConfig(sparsity=0.9, min_elements=0))
    assert len(r.pack.packed) == 1
    data = r.model.SerializeToString()
    expected = "sparse4x1-avx512vnni" if _has_vnni() else "sparse4x1-avx2" if isa_at_least("avx2") else None
    monkeypatch.delenv("ONNXQ_SPARSE", raising=False)
    sparse, names = _session_and_kernels(data, capfd)
    if expected is None:
        assert not any(x.startswith("sparse") for x in names), names  # scalar level: the dense reference
        return
    if isa_at_least("amx"):
        # the dense AMX kernel beats the sparse one below 95 % block sparsity (SparseQdqMatMulNode::Pays); force
        # the sparse kernel to compare it
        assert names == ["amx"], names
        monkeypatch.setenv("ONNXQ_SPARSE", "always")
        sparse, names = _session_and_kernels(data, capfd)
    assert names == [expected]
    monkeypatch.setenv("ONNXQ_SPARSE", "never")
    dense, names = _session_and_kernels(data, capfd)
    assert len(names) == 1 and not names[0].startswith("sparse")
    two = ep.session(data, provider_options={"num_threads": "2"})
    assert two.get_inputs()[0].name == sparse.get_inputs()[0].name
    rng = np.random.default_rng(1)
    for m in (1, 2, 3, 17, 70, 150):
        if input_kind == "float":
            x = (rng.standard_normal((m, k)) * 3).astype(np.float32)
        elif input_kind == "u8":
            x = rng.integers(0, 256, (m, k), dtype=np.uint8)
        else:
            x = rng.integers(-128, 128, (m, k), dtype=np.int8)
        feed = {sparse.get_inputs()[0].name: x}
        want = dense.run(None, feed)[0]
        np.testing.assert_array_equal(sparse.run(None, feed)[0], want, err_msg=f"m={m}")
        np.testing.assert_array_equal(two.run(None, feed)[0], want, err_msg=f"m={m} 2 threads")


def test_sparse_fp8_ep_picks_the_isa_kernel_and_matches_float64(capfd, monkeypatch):
    """90% 4x1-sparse FP8: the EP runs the sparse FP8 kernel of the ISA level in force (AVX2 + FMA below
    AVX512-BF16), within fp32 summation error of the float64 product and of the dense FP8 path."""
    if not isa_at_least("avx2"):
        pytest.skip("the EP claims FP8 only with a vector FP8 kernel")
    rng = np.random.default_rng(6)
    k, n = 1004, 67
    w = _random_block_sparse(k, n, 4, 1, 0.9, np.float32, seed=2).astype(ml_dtypes.float8_e4m3fn)
    m_, scale = _sparse_fp8_matmul_model(w, rng)
    data = m_.SerializeToString()
    expected = "sparse4x1-fp8-avx512bf16" if isa_at_least("avx512bf16") else "sparse4x1-fp8-avx2"
    monkeypatch.delenv("ONNXQ_SPARSE", raising=False)
    sparse, names = _session_and_kernels(data, capfd)
    assert names == [expected]
    monkeypatch.setenv("ONNXQ_SPARSE", "never")
    dense, names = _session_and_kernels(data, capfd)
    assert len(names) == 1 and not names[0].startswith("sparse")
    wdq = w.astype(np.float64) * scale
    for m in (1, 2, 3, 4, 9, 70):
        x = rng.standard_normal((m, k)).astype(np.float32)
        xa = x.astype(ml_dtypes.bfloat16).astype(np.float64)
        bound = (k + 4) * 2.0**-24 * (np.abs(xa) @ np.abs(wdq)) + 1e-7
        got = sparse.run(None, {"x": x})[0]
        assert np.all(np.abs(got - xa @ wdq) <= bound), f"m={m}"
        assert np.all(np.abs(got - dense.run(None, {"x": x})[0]) <= 2 * bound), f"m={m} vs dense"
