"""The reference kernels against independent definitions: numpy integer math and stock onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxq import _kernels

pytestmark = pytest.mark.every_isa


def qgemm_numpy(a, a_zp, b, b_zp, scale, bias=None):
    """C = float32(sum_k (a - a_zp)(b - b_zp[n])) * scale[n] (+ bias[n]), in that operation order."""
    acc = (a.astype(np.int64) - a_zp) @ (b.astype(np.int64) - np.broadcast_to(b_zp, (b.shape[1],)).astype(np.int64))
    c = acc.astype(np.float32) * scale.astype(np.float32)
    if bias is not None:
        c = c + bias.astype(np.float32)
    return c.astype(np.float32)


SHAPES = [(1, 1, 1), (1, 37, 29), (5, 1, 16), (7, 64, 17), (16, 768, 64), (3, 129, 33), (0, 8, 8), (33, 255, 1)]


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("per_channel_zp", [False, True])
def test_qgemm_u8s8_ref_matches_integer_numpy(m, k, n, per_channel_zp):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    b_zp = rng.integers(-5, 6, n, dtype=np.int8) if per_channel_zp else np.array([3], np.int8)
    a_zp = int(rng.integers(0, 256))
    scale = rng.uniform(1e-4, 1e-2, n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    got = _kernels.qgemm_u8s8_ref(a, a_zp, b, b_zp, scale, bias)
    np.testing.assert_array_equal(got, qgemm_numpy(a, a_zp, b, b_zp, scale, bias))
    got_nb = _kernels.qgemm_u8s8_ref(a, a_zp, b, b_zp, scale)
    np.testing.assert_array_equal(got_nb, qgemm_numpy(a, a_zp, b, b_zp, scale))


def test_qgemm_extreme_values_do_not_overflow_at_max_k():
    k = int(_kernels.QGEMM_MAX_K)
    a = np.full((1, k), 255, np.uint8)
    b = np.full((k, 2), -128, np.int8)
    b_zp = np.array([127, 127], np.int8)  # (b - zp) = -255
    got = _kernels.qgemm_u8s8_ref(a, 0, b, b_zp, np.ones(2, np.float32))
    assert got[0, 0] == np.float32(-255 * 255 * k)


def test_qgemm_rejects_bad_shapes():
    a = np.zeros((2, 3), np.uint8)
    with pytest.raises(ValueError, match="K"):
        _kernels.qgemm_u8s8_ref(a, 0, np.zeros((4, 2), np.int8), np.zeros(1, np.int8), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="scale"):
        _kernels.qgemm_u8s8_ref(a, 0, np.zeros((3, 2), np.int8), np.zeros(1, np.int8), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="zero_point"):
        _kernels.qgemm_u8s8_ref(a, 0, np.zeros((3, 2), np.int8), np.zeros(3, np.int8), np.ones(2, np.float32))


def _ort_quantize(x: np.ndarray, scale: float, zp: int, signed: bool) -> np.ndarray:
    zp_arr = np.array(zp, np.int8 if signed else np.uint8)
    g = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])],
        "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.INT8 if signed else TensorProto.UINT8, [None])],
        initializer=[numpy_helper.from_array(np.array(scale, np.float32), "s"), numpy_helper.from_array(zp_arr, "z")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def _awkward_floats(scale: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    ties = (np.arange(-300, 300) + 0.5).astype(np.float32) * np.float32(scale)  # exact .5 multiples of scale
    return np.concatenate([
        rng.standard_normal(1001).astype(np.float32) * 3,
        ties,
        np.array([0.0, -0.0, 1e30, -1e30, np.inf, -np.inf, np.nan, 1e-40], np.float32),
    ]).astype(np.float32)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("scale,zp", [(0.02, 0), (0.5, 7), (1 / 3, -5), (0.0137, 100)])
def test_quantize_linear_matches_onnxruntime_bit_for_bit(signed, scale, zp):
    if not signed and zp < 0:
        zp = -zp
    x = _awkward_floats(scale)
    ref = _ort_quantize(x, scale, zp, signed)
    shift = 128 if signed else 0
    got = _kernels.quantize_linear_u8_ref(x, np.float32(scale), zp + shift)
    if signed:
        got = (got.astype(np.int16) - 128).astype(np.int8)
    finite = np.isfinite(x)
    np.testing.assert_array_equal(got[finite], ref[finite])
    # saturation and NaN: +inf -> high bound, -inf -> low bound, NaN -> low bound (onnxruntime's choice on x86
    # is implementation-defined for NaN, so only ours is pinned here)
    lo, hi = (-128, 127) if signed else (0, 255)
    assert got[x == np.inf].item() == hi and got[x == -np.inf].item() == lo
    assert got[np.isnan(x)].item() == lo


def test_cpu_features_reports_a_string():
    f = _kernels.cpu_features()
    assert isinstance(f, str)
    if f:
        assert all(tok.replace("_", "").isalnum() for tok in f.split())


def test_onnx_checker_accepts_reference_quantize_model():
    # guards the helper above: the model it builds is valid ONNX
    zp = np.array(0, np.uint8)
    g = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [None])],
        initializer=[numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(zp, "z")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.checker.check_model(m, full_check=True)
