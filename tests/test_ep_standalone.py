"""What the EP claims outside the MatMul groups: FP8 QuantizeLinear / DequantizeLinear (bit-exact with stock
onnxruntime, which follows ONNX's definition) and Gather over a dequantized table (only the gathered rows are
dequantized; equal to stock onnxruntime, bounds-checked indices)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _fp8_cases import FMTS, SCALES, fp8_codes, quantize_cases
from onnx import TensorProto, helper, numpy_helper

import onnxq.ep as ep
from onnxq import _kernels
from onnxq.apps.model_builders import fp8_tensor
from onnxq.cpu import isa_at_least

EP = ep.EP_NAME
FP8 = {"e4m3fn": TensorProto.FLOAT8E4M3FN, "e5m2": TensorProto.FLOAT8E5M2}
DT8 = {"e4m3fn": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}


pytestmark = [pytest.mark.every_isa, pytest.mark.usefixtures("fp8_kernel_everywhere")]


def _model(nodes, inputs, outputs, inits):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.checker.check_model(m, full_check=True)
    return m.SerializeToString()


def _claimed(sess):
    return [n.split(":")[0] for n in ep.assigned_nodes(sess).get(EP, [])]


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_fp8_quantize_then_dequantize_round_trip_is_bit_exact(fmt):
    # Q and DQ separated by a Relu so neither folds into a MatMul group: each is claimed on its own
    inits = [numpy_helper.from_array(np.array(0.037, np.float32), "s"), fp8_tensor(np.zeros(()), "z", fmt)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    data = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 37])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 37])], inits)
    cpu, fast = ort.InferenceSession(data, providers=["CPUExecutionProvider"]), ep.session(data)
    assert sorted(_claimed(fast)) == ["DequantizeLinear", "QuantizeLinear"]
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal((40, 37)) * s for s in (1e-3, 1, 30, 1e4)]).astype(np.float32)
    x[0, :4] = [np.inf, -np.inf, 0.0, -0.0]
    np.testing.assert_array_equal(fast.run(None, {"x": x})[0], cpu.run(None, {"x": x})[0])


def _gather_model(table_type, scale_shape, axis, zp, fmt=None):
    rng = np.random.default_rng(1)
    rows, cols = 50, 24
    if table_type == TensorProto.INT8:
        t = numpy_helper.from_array(rng.integers(-128, 128, (rows, cols)).astype(np.int8), "table")
    elif table_type == TensorProto.UINT8:
        t = numpy_helper.from_array(rng.integers(0, 256, (rows, cols)).astype(np.uint8), "table")
    else:
        t = fp8_tensor(rng.standard_normal((rows, cols)) * 10, "table", fmt)
    scale = rng.uniform(0.01, 0.1, scale_shape).astype(np.float32)
    inits = [t, numpy_helper.from_array(scale, "scale")]
    dq_in = ["table", "scale"]
    if zp:
        zarr = rng.integers(-5, 5, scale_shape).astype(np.int8) if table_type == TensorProto.INT8 else \
            rng.integers(100, 150, scale_shape).astype(np.uint8)
        inits.append(numpy_helper.from_array(zarr, "zp"))
        dq_in.append("zp")
    nodes = [helper.make_node("DequantizeLinear", dq_in, ["tf"], axis=axis),
             helper.make_node("Gather", ["tf", "ids"], ["y"], axis=0)]
    return _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, [None, None])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, cols])], inits)


CASES = [(TensorProto.INT8, (), 1, False, None), (TensorProto.INT8, (24,), 1, True, None),
         (TensorProto.UINT8, (50,), 0, True, None), (TensorProto.FLOAT8E4M3FN, (24,), 1, False, "e4m3fn"),
         (TensorProto.FLOAT8E5M2, (), 1, False, "e5m2")]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}-axis{c[2]}-zp{c[3]}" for c in CASES])
def test_gather_over_dequantized_table(case):
    data = _gather_model(*case)
    cpu, fast = ort.InferenceSession(data, providers=["CPUExecutionProvider"]), ep.session(data)
    assert sorted(_claimed(fast)) == ["DequantizeLinear", "Gather"]
    ids = np.array([[0, 5, 49, -1], [3, 3, -50, 17]], np.int64)
    np.testing.assert_array_equal(fast.run(None, {"ids": ids})[0], cpu.run(None, {"ids": ids})[0])


def test_gather_index_out_of_range_is_a_clear_error():
    data = _gather_model(TensorProto.INT8, (), 1, False)
    fast = ep.session(data)
    with pytest.raises(Exception, match="out of range"):
        fast.run(None, {"ids": np.array([[0, 50]], np.int64)})


def test_fp8_quantize_kernel_matches_ml_dtypes():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(3000).astype(np.float32) * s for s in (1e-4, 1, 1e3)])
    for fmt, dt, mx in (("e4m3fn", ml_dtypes.float8_e4m3fn, 448.0), ("e5m2", ml_dtypes.float8_e5m2, 57344.0)):
        want = np.clip(x / np.float32(0.5), -mx, mx).astype(dt).view(np.uint8)
        np.testing.assert_array_equal(_kernels.float_to_fp8(x / np.float32(0.5), fmt), want)


# ------------------------------------------------------------------------------------------ Q / DQ variants


def _slices(a):
    yield a
    for n in (*range(1, 34), 63, 65):
        yield a[3:3 + n]


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("scale", SCALES)
def test_fp8_quantize_every_variant_equals_reference_bit_for_bit(fmt, scale):
    x = quantize_cases(fmt, scale)
    variants = _kernels.fp8_conversion_variants("quantize_fp8")
    assert variants == (["avx512"] if isa_at_least("avx512") else []) + (["avx2"] if isa_at_least("avx2") else []) \
        + ["ref"]
    for part in _slices(x):
        want = _kernels.quantize_fp8(part, scale, fmt, "ref")
        for v in variants:
            np.testing.assert_array_equal(_kernels.quantize_fp8(part, scale, fmt, v), want, err_msg=v)


@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("scale", [*SCALES, 0.0, -2.5, float("inf")])
def test_fp8_dequantize_every_variant_equals_reference_bit_for_bit(fmt, scale):
    # compared as bit patterns: NaN payloads and signs count too (0 * inf and inf * 0 give onnxruntime's NaN)
    codes = fp8_codes()
    variants = _kernels.fp8_conversion_variants("dequantize_fp8")
    for part in _slices(codes):
        with np.errstate(invalid="ignore", over="ignore"):
            want = _kernels.dequantize_fp8(part, scale, fmt, "ref").view(np.uint32)
            for v in variants:
                np.testing.assert_array_equal(_kernels.dequantize_fp8(part, scale, fmt, v).view(np.uint32), want,
                                              err_msg=v)
    # and the reference is float(fp8) * scale (ml_dtypes' decode)
    with np.errstate(invalid="ignore", over="ignore"):
        want = codes.view(DT8[fmt]).astype(np.float32) * np.float32(scale)
    got = _kernels.dequantize_fp8(codes, scale, fmt, "ref")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isnan(want)], want[~np.isnan(want)])


def test_fp8_qdq_variant_above_the_isa_ceiling_is_a_clear_error():
    x, v = np.ones(4, np.float32), np.zeros(4, np.uint8)
    for name, level in (("avx2", "avx2"), ("avx512", "avx512")):
        if not isa_at_least(level):
            with pytest.raises(ValueError, match="not available"):
                _kernels.quantize_fp8(x, 1.0, "e4m3fn", name)
            with pytest.raises(ValueError, match="not available"):
                _kernels.dequantize_fp8(v, 1.0, "e5m2", name)
