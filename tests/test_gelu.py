"""GELU in the onnxq EP: the vector kernel against its double-precision reference, which groups the EP claims
(ONNX Gelu and the Erf form exporters write, in both multiplication orders) and leaves, and outputs against
stock onnxruntime.

Bounds: the kernel's erfc is a fitted polynomial under exp (5e-8 relative in double), evaluated in float: about
4e-7 relative, plus, for negative x, the rounding of exp's argument -x^2/2 (ulp(x^2/2) ~ 6e-8 x^2 absolute, so
relative on the result): 3e-7 * x^2/2 covers it (1.5e-6 measured at x = -3.8, where |y| = 2.7e-4).
Against onnxruntime (its own float erf): 1e-6 absolute per unit of max(1, |x|). A wrong constant, a missing
factor 0.5 or a swapped operand is off by O(|x|).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxq.ep as ep
from onnxq import _kernels

EP = ep.EP_NAME
HAS_AVX512 = "avx512f" in _kernels.cpu_features()


def test_reference_matches_math_erfc():
    x = np.linspace(-20, 20, 4001, dtype=np.float32)
    want = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)])
    np.testing.assert_allclose(_kernels.gelu(x, "ref"), want, rtol=1e-7, atol=1e-45)


@pytest.mark.skipif(not HAS_AVX512, reason="AVX-512 variant")
@pytest.mark.parametrize("n", [1, 15, 16, 17, 1000])
def test_vector_kernel_within_bound_of_reference(n):
    rng = np.random.default_rng(n)
    x = np.concatenate([np.linspace(-15, 15, 200001, dtype=np.float32),
                        (rng.standard_normal(n) * 4).astype(np.float32)])
    want = _kernels.gelu(x, "ref").astype(np.float64)
    got = _kernels.gelu(x, "avx512").astype(np.float64)
    err = np.abs(got - want)
    rel = 4e-7 + 3e-7 * np.where(x < 0, x.astype(np.float64) ** 2 / 2, 0)  # exp's argument -x^2/2 rounds in float
    assert np.all(err <= rel * np.abs(want) + 1e-37), float(np.max(err / (rel * np.abs(want) + 1e-37)))


@pytest.mark.skipif(not HAS_AVX512, reason="AVX-512 variant")
def test_vector_kernel_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 3e-39, -3e-39], np.float32)
    got = _kernels.gelu(x, "avx512")
    # +inf stays +inf; -inf gives NaN like x / 2 * (1 + erf(x / sqrt 2)) does in float; huge negatives give -0
    np.testing.assert_array_equal(got[[0, 1, 2, 5, 6]], np.array([0.0, -0.0, np.inf, 1e30, -0.0], np.float32))
    assert np.isnan(got[3]) and np.isnan(got[4])
    assert np.all(np.abs(got[7:]) <= 3e-39)


def test_kernel_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="variant"):
        _kernels.gelu(np.zeros(3, np.float32), "nope")


# ------------------------------------------------------------------------------------------------ in the EP


def _const(name: str, v: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(v, np.float32), name)


def _model(kind: str) -> onnx.ModelProto:
    shape = ["batch", 7, 33]
    inits = [_const("sqrt2", math.sqrt(2)), _const("one", 1.0), _const("half", 0.5),
             _const("rsqrt2", 1 / math.sqrt(2)), _const("two", 2.0)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)]
    opset = 17
    if kind == "onnx-gelu":
        nodes = [helper.make_node("Gelu", ["x"], ["y"])]
        opset = 20
    elif kind == "onnx-gelu-tanh":
        nodes = [helper.make_node("Gelu", ["x"], ["y"], approximate="tanh")]
        opset = 20
    elif kind in ("erf-a", "erf-wrong-constant", "erf-intermediate-used"):
        nodes = [helper.make_node("Div", ["x", "two" if kind == "erf-wrong-constant" else "sqrt2"], ["d"]),
                 helper.make_node("Erf", ["d"], ["e"]),
                 helper.make_node("Add", ["e", "one"], ["a"]),
                 helper.make_node("Mul", ["x", "a"], ["m"]),
                 helper.make_node("Mul", ["m", "half"], ["y"])]
        if kind == "erf-intermediate-used":
            outputs.append(helper.make_tensor_value_info("e", TensorProto.FLOAT, shape))
    elif kind == "erf-b":
        nodes = [helper.make_node("Mul", ["x", "rsqrt2"], ["d"]),
                 helper.make_node("Erf", ["d"], ["e"]),
                 helper.make_node("Add", ["one", "e"], ["a"]),
                 helper.make_node("Mul", ["half", "x"], ["h"]),
                 helper.make_node("Mul", ["a", "h"], ["y"])]
    else:
        raise ValueError(kind)
    g = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)], outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


CLAIMED = {"onnx-gelu": ["Gelu"], "erf-a": ["Add", "Div", "Erf", "Mul", "Mul"],
           "erf-b": ["Add", "Erf", "Mul", "Mul", "Mul"]}
NOT_CLAIMED = ["onnx-gelu-tanh", "erf-wrong-constant", "erf-intermediate-used"]


def _x() -> np.ndarray:
    return (np.random.default_rng(4).standard_normal((3, 7, 33)) * 3).astype(np.float32)


@pytest.mark.parametrize("kind", list(CLAIMED))
@pytest.mark.parametrize("threads", [1, 2])
def test_ep_claims_and_matches_onnxruntime(kind, threads):
    data = _model(kind).SerializeToString()
    fast = ep.session(data, provider_options={"num_threads": str(threads)})
    claimed = sorted(n.split(":")[0] for n in ep.assigned_nodes(fast).get(EP, []))
    if not HAS_AVX512 and not claimed:
        pytest.skip("no claim without the vector kernel")  # the reference is claimed too; kept for clarity
    assert claimed == sorted(CLAIMED[kind]), claimed
    x = _x()
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = fast.run(None, {"x": x})[0]
    assert np.all(np.abs(got - want) <= 1e-6 * np.maximum(1, np.abs(x))), float(np.max(np.abs(got - want)))


@pytest.mark.parametrize("kind", NOT_CLAIMED)
def test_ep_leaves_other_forms_to_onnxruntime(kind):
    data = _model(kind).SerializeToString()
    fast = ep.session(data)
    claimed = [n.split(":")[0] for n in ep.assigned_nodes(fast).get(EP, [])]
    assert not {"Erf", "Gelu"} & set(claimed), claimed
    x = _x()
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for a, b in zip(fast.run(None, {"x": x}), want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_ep_gelu_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("ONNXQ_GELU", "never")
    fast = ep.session(_model("erf-a").SerializeToString())
    assert ep.assigned_nodes(fast).get(EP, []) == []
