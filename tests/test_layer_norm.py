"""Residual + LayerNorm in the onnxq EP: the kernel against its scalar reference (and an independent numpy
formula), what the EP claims and leaves to onnxruntime, and its outputs against stock onnxruntime.

Not bit-identical to onnxruntime (summation order differs). The bound used throughout: for an output value
y = n * gamma + beta with n the normalized input (|n| <= sqrt(D)), float32 arithmetic on D-term sums gives
|err| <= c * D * 2^-24 * (|n| * |gamma| + |beta| + 1); c = 4 covers the mean, the variance, the division and the
affine step, and is far below what a wrong axis, epsilon, skip, bias, gamma or beta gives (those move values
by O(1) of the output scale).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _stock import stock_session
from onnx import TensorProto, helper, numpy_helper

import onnxq.ep as ep
from onnxq import _kernels
from onnxq.cpu import isa_at_least

EP = ep.EP_NAME
pytestmark = pytest.mark.every_isa


def _variants() -> list[str]:  # at test time: the ISA ceiling may hide the vector kernels
    return (["ref"] + (["avx2"] if isa_at_least("avx2") else [])
            + (["avx512"] if isa_at_least("avx512") else []))


def _numpy_ln(x, skip, bias, gamma, beta, eps):
    s = x.astype(np.float64)
    if bias is not None:
        s = s + bias
    if skip is not None:
        s = s + skip
    mean = s.mean(-1, keepdims=True)
    var = ((s - mean) ** 2).mean(-1, keepdims=True)
    y = (s - mean) / np.sqrt(var + eps) * gamma
    return y + beta if beta is not None else y


def _bound(d: int, n: np.ndarray, gamma: np.ndarray, beta: np.ndarray | None) -> np.ndarray:
    b = np.abs(beta) if beta is not None else 0.0
    return 4 * d * 2.0**-24 * (np.abs(n) * np.abs(gamma) + b + 1)


@pytest.mark.parametrize("d", [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48, 384, 768, 1000, 1023])
@pytest.mark.parametrize("parts", ["plain", "skip", "skip+bias", "bias", "no-beta"])
def test_kernel_matches_reference_and_numpy(d, parts):
    rng = np.random.default_rng(d)
    rows = 7
    x = (rng.standard_normal((rows, d)) * 3 + 1).astype(np.float32)
    skip = rng.standard_normal((rows, d)).astype(np.float32) if "skip" in parts else None
    bias = rng.standard_normal(d).astype(np.float32) if "bias" in parts else None
    gamma = rng.uniform(0.5, 2, d).astype(np.float32)
    beta = None if parts == "no-beta" else rng.standard_normal(d).astype(np.float32)
    want = _numpy_ln(x, skip, bias, gamma, beta, 1e-5)
    n = (want - (beta if beta is not None else 0)) / gamma
    bound = _bound(d, n, gamma, beta)
    variants = _variants()
    for v in variants:
        got = _kernels.layer_norm(x, skip, bias, gamma, beta, 1e-5, v)
        err = np.abs(got.astype(np.float64) - want)
        assert np.all(err <= bound), f"{v}: worst {(err / bound).max():.3g} of the bound"


def _float32_sum(x, skip, bias):
    s = x if bias is None else (x + bias).astype(np.float32)  # the kernels add in float32: (x + bias) + skip
    return s if skip is None else (s + skip).astype(np.float32)


@pytest.mark.parametrize("d", [7, 17, 768, 1023])
@pytest.mark.parametrize("offset", [1e2, 1e4, 1e6, -3e5])
def test_kernel_rows_with_a_huge_common_offset(d, offset):
    # a residual stream far from zero: float sums of s would lose the spread to cancellation (a one-pass
    # E[s^2] - mean^2, or a mean summed without a shift, is off by O(offset * D * 2^-24) of the output scale); the
    # kernels must stay within the bound of an offset-free row, measured against float64 math on the same float32 s
    rng = np.random.default_rng(d)
    rows = 5
    x = (offset + rng.standard_normal((rows, d))).astype(np.float32)
    skip = rng.standard_normal((rows, d)).astype(np.float32)
    bias = rng.standard_normal(d).astype(np.float32)
    gamma = rng.uniform(0.5, 2, d).astype(np.float32)
    beta = rng.standard_normal(d).astype(np.float32)
    want = _numpy_ln(_float32_sum(x, skip, bias), None, None, gamma, beta, 1e-5)
    bound = _bound(d, (want - beta) / gamma, gamma, beta)
    for v in _variants():
        got = _kernels.layer_norm(x, skip, bias, gamma, beta, 1e-5, v)
        err = np.abs(got.astype(np.float64) - want)
        assert np.all(err <= bound), f"{v}: worst {(err / bound).max():.3g} of the bound"


@pytest.mark.parametrize("d", [1, 7, 8, 9, 17, 768])
def test_kernel_nan_and_inf_poison_their_row_like_the_reference(d):
    # a NaN or an infinity anywhere in a row's sum makes that whole row NaN (mean or variance is NaN), other rows
    # are untouched; a non-finite bias poisons every row
    rng = np.random.default_rng(5)
    rows = 6
    x = rng.standard_normal((rows, d)).astype(np.float32)
    skip = rng.standard_normal((rows, d)).astype(np.float32)
    bias = rng.standard_normal(d).astype(np.float32)
    gamma = rng.uniform(0.5, 2, d).astype(np.float32)
    beta = rng.standard_normal(d).astype(np.float32)
    last = d - 1
    x[1, last] = np.nan          # in the tail of the row (d % 8 != 0) as well as in a full vector
    skip[2, 0] = np.inf          # the first value (the kernels' shift)
    x[3, d // 2] = np.inf
    skip[3, last] = -np.inf      # +inf + -inf
    x[4, last] = -np.inf
    ref = _kernels.layer_norm(x, skip, bias, gamma, beta, 1e-5, "ref")
    poisoned = [1, 2, 3, 4]
    assert np.isnan(ref[poisoned]).all() and np.isfinite(np.delete(ref, poisoned, 0)).all()
    with np.errstate(invalid="ignore"):  # inf - inf in the poisoned rows
        want = _numpy_ln(_float32_sum(x, skip, bias), None, None, gamma, beta, 1e-5)
    bound = _bound(d, (want - beta) / gamma, gamma, beta)
    bad_bias = bias.copy()
    bad_bias[last] = np.nan
    for v in _variants():
        got = _kernels.layer_norm(x, skip, bias, gamma, beta, 1e-5, v)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=v)
        ok = np.isfinite(ref)
        assert np.all(np.abs(got[ok] - want[ok]) <= bound[ok]), v
        assert np.isnan(_kernels.layer_norm(x, None, bad_bias, gamma, beta, 1e-5, v)).all(), v


def test_kernel_variant_above_the_isa_ceiling_is_a_clear_error():
    x, g = np.zeros((2, 8), np.float32), np.ones(8, np.float32)
    for v, level in (("avx2", "avx2"), ("avx512", "avx512")):
        if isa_at_least(level):
            _kernels.layer_norm(x, None, None, g, None, 1e-5, v)
        else:
            with pytest.raises(ValueError, match="not available"):
                _kernels.layer_norm(x, None, None, g, None, 1e-5, v)


def test_kernel_constant_rows_give_beta():
    # variance 0: the normalized row is 0 and the output is beta (epsilon keeps it finite)
    x = np.full((3, 40), 2.5, np.float32)
    gamma = np.ones(40, np.float32)
    beta = np.arange(40, dtype=np.float32)
    for v in _variants():
        np.testing.assert_array_equal(_kernels.layer_norm(x, None, None, gamma, beta, 1e-5, v), np.tile(beta, (3, 1)))


def test_kernel_rejects_bad_shapes():
    with pytest.raises(ValueError, match="gamma"):
        _kernels.layer_norm(np.zeros((2, 8), np.float32), None, None, np.ones(7, np.float32), None, 1e-5, "ref")
    with pytest.raises(ValueError, match="variant"):
        _kernels.layer_norm(np.zeros((2, 8), np.float32), None, None, np.ones(8, np.float32), None, 1e-5, "nope")


# ------------------------------------------------------------------------------------------------ in the EP


def _model(kind: str, d: int = 96, dims=("batch", 20)) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    shape = [*dims, d]
    inits = [numpy_helper.from_array(rng.uniform(0.5, 2, d).astype(np.float32), "gamma"),
             numpy_helper.from_array(rng.standard_normal(d).astype(np.float32), "beta"),
             numpy_helper.from_array(rng.standard_normal(d).astype(np.float32), "bias")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
              helper.make_tensor_value_info("r", TensorProto.FLOAT, shape)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)]
    ln_attrs = {"axis": -1, "epsilon": 1e-5}
    nodes = []
    if kind == "plain":
        nodes.append(helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["y"], **ln_attrs))
        inputs = inputs[:1]
    elif kind == "skip":
        nodes += [helper.make_node("Add", ["x", "r"], ["s"]),
                  helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], **ln_attrs)]
    elif kind == "skip+bias":
        nodes += [helper.make_node("Add", ["bias", "x"], ["xb"]),  # constant first: either order matches
                  helper.make_node("Add", ["r", "xb"], ["s"]),
                  helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], **ln_attrs)]
    elif kind == "sum-also-output":  # the residual sum is read elsewhere: only the LayerNorm is claimed
        nodes += [helper.make_node("Add", ["x", "r"], ["s"]),
                  helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], **ln_attrs)]
        outputs.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, shape))
    elif kind == "broadcast-skip":  # residual of another shape: broadcast per run, then normalized
        inputs[1] = helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 1, d])
        nodes += [helper.make_node("Add", ["x", "r"], ["s"]),
                  helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], **ln_attrs)]
    elif kind == "broadcast-x+bias":  # x [b, 20, 1]: x + bias and then + skip broadcast up to D
        inputs[0] = helper.make_tensor_value_info("x", TensorProto.FLOAT, [*dims, 1])
        nodes += [helper.make_node("Add", ["x", "bias"], ["xb"]),
                  helper.make_node("Add", ["xb", "r"], ["s"]),
                  helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], **ln_attrs)]
    elif kind == "two-axes":  # normalizes [20, d]: not claimed
        nodes.append(helper.make_node("LayerNormalization", ["x", "g2"], ["y"], axis=1, epsilon=1e-5))
        inits.append(numpy_helper.from_array(np.ones((20, d), np.float32), "g2"))
        inputs = inputs[:1]
    elif kind == "mean-used":
        nodes.append(helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["y", "mean"], **ln_attrs))
        outputs.append(helper.make_tensor_value_info("mean", TensorProto.FLOAT, [*dims, 1]))
        inputs = inputs[:1]
    elif kind == "gamma-is-input":
        nodes.append(helper.make_node("LayerNormalization", ["x", "g", "beta"], ["y"], **ln_attrs))
        inputs = [inputs[0], helper.make_tensor_value_info("g", TensorProto.FLOAT, [d])]
    else:
        raise ValueError(kind)
    g = helper.make_graph(nodes, kind, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _feeds(sess: ort.InferenceSession, d: int = 96, batch: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    out = {}
    for i in sess.get_inputs():
        shape = [batch if isinstance(s, str) else s for s in i.shape]
        out[i.name] = (rng.standard_normal(shape) * 2).astype(np.float32)
    return out


CLAIMED = {"plain": ["LayerNormalization"], "skip": ["Add", "LayerNormalization"],
           "skip+bias": ["Add", "Add", "LayerNormalization"], "sum-also-output": ["LayerNormalization"],
           "broadcast-skip": ["Add", "LayerNormalization"],
           "broadcast-x+bias": ["Add", "Add", "LayerNormalization"]}
NOT_CLAIMED = ["two-axes", "mean-used", "gamma-is-input"]


@pytest.mark.parametrize("kind", list(CLAIMED))
@pytest.mark.parametrize("threads", [1, 2])
def test_ep_claims_and_matches_onnxruntime(kind, threads):
    m = _model(kind)
    data = m.SerializeToString()
    fast = ep.session(data, provider_options={"num_threads": str(threads)})
    claimed = sorted(n.split(":")[0] for n in ep.assigned_nodes(fast).get(EP, []))
    assert claimed == sorted(CLAIMED[kind]), claimed
    cpu = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    feeds = _feeds(cpu)
    want = cpu.run(None, feeds)
    got = fast.run(None, feeds)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    gamma, beta = inits["gamma"], inits["beta"]
    n = (want[0] - beta) / gamma
    assert np.all(np.abs(got[0] - want[0]) <= _bound(96, n, gamma, beta))
    for a, b in zip(got[1:], want[1:], strict=True):  # the residual sum, where it is an output too
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", NOT_CLAIMED)
def test_ep_leaves_what_it_cannot_fuse(kind):
    data = _model(kind).SerializeToString()
    fast = ep.session(data)
    claimed = [n.split(":")[0] for n in ep.assigned_nodes(fast).get(EP, [])]
    assert claimed == [], claimed
    cpu = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    feeds = _feeds(cpu)
    for a, b in zip(fast.run(None, feeds), cpu.run(None, feeds), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_ep_layernorm_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("ONNXQ_LAYERNORM", "never")
    fast = ep.session(_model("skip").SerializeToString())
    assert ep.assigned_nodes(fast).get(EP, []) == []


def test_ep_wrong_last_dim_at_run_time_is_a_clean_error():
    # the model declares d = 96 symbolically consistent shapes; feeding another last dim must fail cleanly
    data = _model("plain", dims=("batch", "seq")).SerializeToString()
    fast = ep.session(data)
    with pytest.raises(Exception, match="last dimension|Invalid|dimension"):
        fast.run(None, {"x": np.zeros((2, 3, 95), np.float32)})


def test_ep_fuses_the_residual_layernorms_of_a_quantized_encoder():
    # the tiny encoder's residual Adds feed its two LayerNorms; the MatMul groups keep their own bias Adds (never
    # folded twice), and the whole model stays close to stock onnxruntime on the same file
    from onnxq.apps.model_builders import int8_qdq_static, sample_inputs, tiny_encoder_model

    m = tiny_encoder_model(d=64, ffn=256)
    q = int8_qdq_static(m, [sample_inputs(m, batch=2, seq=16, seed=i) for i in range(3)])
    data = q.SerializeToString()
    fast = ep.session(data)
    claimed = [n.split(":")[0] for n in ep.assigned_nodes(fast).get(EP, [])]
    assert claimed.count("LayerNormalization") == 2, claimed
    cpu = stock_session(data)  # ONNX's float route: stock onnxruntime's INT8 kernel depends on the CPU (_stock.py)
    x = sample_inputs(m, batch=2, seq=16, seed=7)
    want, got = cpu.run(None, x)[0], fast.run(None, x)[0]
    cos = float(np.sum(want * got) / np.sqrt(np.sum(want * want) * np.sum(got * got)))
    assert cos > 0.9999, cos
    off = ep.session(data, provider_options={"num_threads": "2"})  # same result with the pool split
    np.testing.assert_array_equal(off.run(None, x)[0], got)


def _symbolic_ln(eps: float = 1e-5) -> bytes:
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "r"], ["s"]),
         helper.make_node("LayerNormalization", ["s", "gamma"], ["y"], axis=-1, epsilon=eps)], "sym",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", "d"]),
         helper.make_tensor_value_info("r", TensorProto.FLOAT, ["b2", "s2", "d2"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.ones(8, np.float32), "gamma")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


@pytest.mark.parametrize("x_shape,r_shape", [((2, 3, 7), (2, 3, 7)), ((2, 3, 8), (2, 3, 7)), ((2, 3, 8), (5, 3, 8))])
def test_ep_hostile_run_time_shapes_fail_cleanly_like_onnxruntime(x_shape, r_shape):
    # dims unknown at claim time: a last dim that is not gamma's, or operands that do not broadcast, must give an
    # onnxruntime error from both (never a read past a row)
    data = _symbolic_ln()
    fast = ep.session(data)
    assert sorted(n.split(":")[0] for n in ep.assigned_nodes(fast).get(EP, [])) == ["Add", "LayerNormalization"]
    cpu = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    feeds = {"x": np.ones(x_shape, np.float32), "r": np.ones(r_shape, np.float32)}
    for sess in (cpu, fast):
        with pytest.raises(Exception):  # noqa: B017 - onnxruntime raises its own exception types
            sess.run(None, feeds)


def test_ep_leaves_a_nan_epsilon_to_onnxruntime():
    fast = ep.session(_symbolic_ln(eps=float("nan")))
    assert ep.assigned_nodes(fast).get(EP, []) == []
