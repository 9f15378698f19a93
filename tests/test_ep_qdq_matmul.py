"""The onnxq EP on INT8 Q/DQ MatMul / Gemm models: what it claims, and that its outputs are right.

Two references for every case:
* an integer reference in numpy (quantize exactly as ONNX QuantizeLinear, int32 accumulation, one float multiply
  by a_scale*w_scale[n], then one float add of the bias) — the EP must equal it bit for bit;
* ONNX's float route: stock onnxruntime with graph optimizations off (DequantizeLinear, then a float MatMul). Stock
  onnxruntime's default route fuses an integer kernel (for example MatMulIntegerToFloat for 3-D MatMul + Add) whose
  result depends on the CPU — exact with VNNI / AMX, saturating 16-bit pair sums with AVX2 (tests/_stock.py) — so
  the EP is compared bit for bit with it only where a probe shows it exact. For the float route the tolerance is
  the textbook bound for a float32 dot product of already-rounded operands:
  |err| <= (K + 4) * 2^-24 * sum_k |x_dq[k] * w_dq[k, n]| + 2^-23 * (|y| + |bias|), which is far below what any
  wrong zero point, scale, layout or rounding mode would give (those are off by at least one quantization step
  times |w|).
"""

from __future__ import annotations

import threading

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _stock import STOCK_INT8_SATURATES_REASON, stock_int8_saturates, stock_session
from onnx import TensorProto, helper, numpy_helper

import onnxq.ep as ep
from onnxq import _kernels
from onnxq.apps.model_builders import qdq_matmul_model, quantize_weight_per_column_s8

pytestmark = pytest.mark.every_isa

EP = ep.EP_NAME


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _quantize(x: np.ndarray, scale: np.float32, zp: int, signed: bool) -> np.ndarray:
    """Independent of the EP's code path but pinned to onnxruntime by test_kernels_ref."""
    q = _kernels.quantize_linear_u8_ref(x, np.float32(scale), int(zp) + (128 if signed else 0)).astype(np.int32)
    return q - (128 if signed else 0)


def reference(model: onnx.ModelProto, x: np.ndarray, sfx: str = "") -> np.ndarray:
    """Integer reference for a model from qdq_matmul_model (output y{sfx})."""
    i = _inits(model)
    signed = i["x_zp"].dtype == np.int8
    xs, xz = np.float32(i["x_scale"]), int(i["x_zp"])
    q = x.astype(np.int32) if x.dtype != np.float32 else _quantize(x, xs, xz, signed)
    w = i[f"w{sfx}"].astype(np.int64)
    wz = i.get(f"w_zp{sfx}", np.zeros(1, np.int8)).astype(np.int64)
    acc = (q.astype(np.int64) - xz) @ (w - wz)
    scale = (xs * np.asarray(i[f"w_scale{sfx}"], np.float32)).astype(np.float32)
    y = acc.astype(np.float32) * scale
    if f"b{sfx}" in i:
        y = y + i[f"b{sfx}"]
    return y.astype(np.float32)


def float_route_bound(model: onnx.ModelProto, x: np.ndarray, y: np.ndarray, sfx: str = "") -> np.ndarray:
    i = _inits(model)
    signed = i["x_zp"].dtype == np.int8
    xs, xz = np.float32(i["x_scale"]), int(i["x_zp"])
    q = x.astype(np.int32) if x.dtype != np.float32 else _quantize(x, xs, xz, signed)
    x_dq = np.abs((q - xz).astype(np.float64) * xs)
    wz = i.get(f"w_zp{sfx}", np.zeros(1, np.int8)).astype(np.float64)
    w_dq = np.abs((i[f"w{sfx}"].astype(np.float64) - wz) * np.asarray(i[f"w_scale{sfx}"], np.float64))
    k = w_dq.shape[0]
    b = np.abs(i.get(f"b{sfx}", np.zeros(1, np.float32))).astype(np.float64)
    return (k + 4) * 2.0**-24 * (x_dq @ w_dq) + 2.0**-23 * (np.abs(y) + b)


def _sessions(model: onnx.ModelProto):
    data = model.SerializeToString()
    cpu = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return cpu, ep.session(data)


def _input(model: onnx.ModelProto, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = model.graph.input[0].type.tensor_type.elem_type
    if t == TensorProto.FLOAT:
        return (rng.standard_normal(shape) * 2).astype(np.float32)
    if t == TensorProto.UINT8:
        return rng.integers(0, 256, shape).astype(np.uint8)
    return rng.integers(-128, 128, shape).astype(np.int8)


def _claimed_ops(sess) -> list[str]:
    return sorted(n.split(":")[0] for n in ep.assigned_nodes(sess).get(EP, []))


# -------------------------------------------------------------------------------------------- registration


def test_register_is_idempotent_and_ep_is_listed():
    assert ep.register() == EP
    assert ep.register() == EP
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP]
    assert len(devices) == 1
    assert devices[0].ep_vendor == "onnxq"
    assert "onnxq_version" in devices[0].ep_metadata


def test_ep_name_works_in_providers_list():
    ep.register()
    m = qdq_matmul_model(16, 8, rank=3)
    sess = ort.InferenceSession(m.SerializeToString(), providers=[EP, "CPUExecutionProvider"])
    assert sess.get_providers()[0] == EP


# ------------------------------------------------------------------------------------ claims and numerics

CASES = [
    # (k, n, input shape, model kwargs)
    (37, 29, (5, 37), {}),
    (37, 29, (1, 37), {}),
    (1, 16, (3, 1), {}),
    (64, 17, (2, 9, 64), {"rank": 3}),
    (33, 48, (1, 1, 33), {"rank": 3}),
    (129, 31, (4, 129), {"signed_activation": True}),
    (40, 24, (6, 40), {"per_channel": False, "bias": False}),
    (40, 24, (2, 3, 40), {"rank": 3, "bias": False}),
    (31, 15, (7, 31), {"weight_zero_point": True}),
    (31, 15, (2, 5, 31), {"rank": 3, "weight_zero_point": True, "signed_activation": True}),
    (50, 20, (3, 50), {"include_quantize": False}),
    (50, 20, (3, 50), {"include_quantize": False, "signed_activation": True}),
    (24, 12, (4, 24), {"shared_dq_consumers": 3}),
    (24, 12, (2, 4, 24), {"shared_dq_consumers": 2, "rank": 3, "bias": False}),
    (768, 64, (3, 768), {"seed": 7}),
]


def _ids(case):
    k, n, shape, kw = case
    return f"k{k}-n{n}-x{'x'.join(map(str, shape))}" + "".join(f"-{a}={b}" for a, b in kw.items())


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_ep_claims_and_matches(case):
    # bit for bit against our integer reference; within fp32 summation error of ONNX's float route (stock onnxruntime
    # with graph optimizations off: its fused integer kernel depends on the CPU, see tests/_stock.py)
    k, n, shape, kw = case
    model = qdq_matmul_model(k, n, **kw)
    onnx.checker.check_model(model, full_check=True)
    cpu, fast = stock_session(model.SerializeToString()), ep.session(model.SerializeToString())
    claimed = _claimed_ops(fast)
    consumers = kw.get("shared_dq_consumers", 1)
    assert claimed.count("MatMul") + claimed.count("Gemm") == consumers, claimed

    x = _input(model, shape, seed=k + n)
    got = fast.run(None, {model.graph.input[0].name: x})
    ref_cpu = cpu.run(None, {model.graph.input[0].name: x})
    for idx in range(consumers):
        sfx = "" if consumers == 1 else f"_{idx}"
        want = reference(model, x, sfx)
        assert got[idx].shape == want.shape == ref_cpu[idx].shape
        np.testing.assert_array_equal(got[idx], want)  # bit for bit against the integer reference
        bound = float_route_bound(model, x, want, sfx)
        err = np.abs(got[idx].astype(np.float64) - ref_cpu[idx])
        assert np.all(err <= bound), f"max err {err.max()} vs bound {bound[err > bound].min()}"


@pytest.mark.parametrize("kw", [{"rank": 3}, {"rank": 3, "signed_activation": True}, {"bias": False}])
def test_integer_route_is_bit_exact_with_onnxruntime(kw):
    """Where onnxruntime runs its own integer kernel (3-D MatMul + Add, MatMul without bias) and that kernel is exact
    on this CPU, results agree exactly; the EP equals the integer reference everywhere."""
    model = qdq_matmul_model(57, 23, **kw)
    cpu, fast = _sessions(model)
    x = _input(model, (2, 7, 57) if kw.get("rank") == 3 else (7, 57), seed=3)
    np.testing.assert_array_equal(fast.run(None, {"x": x})[0], reference(model, x))
    if stock_int8_saturates():
        pytest.skip(STOCK_INT8_SATURATES_REASON)
    np.testing.assert_array_equal(fast.run(None, {"x": x})[0], cpu.run(None, {"x": x})[0])


def test_zero_rows_and_dynamic_batch():
    model = qdq_matmul_model(16, 8, rank=3)
    cpu, fast = _sessions(model)
    for shape in [(0, 5, 16), (2, 0, 16), (1, 1, 16), (3, 11, 16)]:
        x = _input(model, shape)
        got = fast.run(None, {"x": x})[0]
        assert got.shape == shape[:-1] + (8,)
        np.testing.assert_array_equal(got, reference(model, x))


def _gemm_model(k: int, n: int, trans_b: bool, alpha: float = 1.0) -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    w = rng.standard_normal((k, n)).astype(np.float32)
    wq, ws = quantize_weight_per_column_s8(w)
    if trans_b:
        wq = np.ascontiguousarray(wq.T)
    inits = [
        numpy_helper.from_array(np.array(0.03, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "x_zp"),
        numpy_helper.from_array(wq, "w"),
        numpy_helper.from_array(ws, "w_scale"),
        numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xdq"]),
        helper.make_node("DequantizeLinear", ["w", "w_scale"], ["wdq"], axis=0 if trans_b else 1),
        helper.make_node("Gemm", ["xdq", "wdq", "b"], ["y"], transB=int(trans_b), alpha=alpha),
    ]
    g = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.checker.check_model(m, full_check=True)
    return m


@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_with_and_without_trans_b(trans_b):
    m = _gemm_model(45, 19, trans_b)
    cpu, fast = _sessions(m)
    assert "Gemm" in _claimed_ops(fast)
    x = np.random.default_rng(1).standard_normal((6, 45)).astype(np.float32)
    got, want = fast.run(None, {"x": x})[0], cpu.run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_gemm_with_alpha_is_left_to_onnxruntime():
    m = _gemm_model(45, 19, False, alpha=0.5)
    cpu, fast = _sessions(m)
    assert _claimed_ops(fast) == []
    x = np.random.default_rng(1).standard_normal((6, 45)).astype(np.float32)
    np.testing.assert_array_equal(fast.run(None, {"x": x})[0], cpu.run(None, {"x": x})[0])


def _with_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(value, name))
    return out


@pytest.mark.parametrize("bad_scale", [0.0, -0.5, np.inf, np.nan])
def test_unusable_scales_are_not_claimed_and_the_model_still_runs(bad_scale):
    base = qdq_matmul_model(20, 10, rank=3)
    ws = _inits(base)["w_scale"].copy()
    ws[3] = bad_scale
    model = _with_initializer(base, "w_scale", ws)
    cpu, fast = _sessions(model)
    assert "MatMul" not in _claimed_ops(fast)
    x = _input(model, (2, 3, 20))
    np.testing.assert_array_equal(fast.run(None, {"x": x})[0], cpu.run(None, {"x": x})[0])


def test_model_with_nothing_to_claim_runs_on_cpu_provider():
    from onnxq.apps.model_builders import mlp_model, sample_inputs

    m = mlp_model()
    cpu, fast = _sessions(m)
    assert _claimed_ops(fast) == []
    feeds = sample_inputs(m, batch=3)
    np.testing.assert_array_equal(fast.run(None, feeds)[0], cpu.run(None, feeds)[0])


def test_corrupt_model_gives_a_clear_error(tmp_path):
    good = qdq_matmul_model(16, 8).SerializeToString()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(Exception, match=r"(?i)(protobuf|parse|invalid|load)"):
        ep.session(str(bad))


def test_concurrent_runs_share_one_session():
    model = qdq_matmul_model(96, 40, rank=3)
    _, fast = _sessions(model)
    xs = [_input(model, (2, 5 + i, 96), seed=i) for i in range(8)]
    want = [reference(model, x) for x in xs]
    errors: list[str] = []

    def worker(tid: int) -> None:
        for r in range(25):
            i = (tid + r) % len(xs)
            got = fast.run(None, {"x": xs[i]})[0]
            if not np.array_equal(got, want[i]):
                errors.append(f"thread {tid} run {r}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_sample_models_are_claimed_and_match():
    from pathlib import Path

    samples = Path(__file__).resolve().parent.parent / "sample_models"
    for name, dims in (("mlp", (4, 64)), ("tiny_encoder", (2, 16, 64))):
        path = samples / f"{name}.int8.onnx"
        cpu = stock_session(str(path))  # ONNX's float route (tests/_stock.py)
        fast = ep.session(str(path))
        claimed = _claimed_ops(fast)
        assert claimed.count("MatMul") + claimed.count("Gemm") >= 3, claimed
        x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
        got, want = fast.run(None, {"x": x})[0], cpu.run(None, {"x": x})[0]
        # whole models: a different route in one layer can flip one activation's rounding in the next, so the
        # check is relative to the output's scale (one u8 step of the last activation is ~1% of its range)
        assert np.max(np.abs(got - want)) <= 1e-2 * np.max(np.abs(want))


def test_session_options_can_be_reused():
    model = qdq_matmul_model(16, 8).SerializeToString()
    so = ort.SessionOptions()
    first, second = ep.session(model, options=so), ep.session(model, options=so)
    assert first.get_providers()[0] == second.get_providers()[0] == EP
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_num_threads_provider_option_is_validated():
    model = qdq_matmul_model(16, 8).SerializeToString()
    with pytest.raises(Exception, match="num_threads"):
        ep.session(model, provider_options={"num_threads": "lots"})
    sess = ep.session(model, provider_options={"num_threads": "3"})
    x = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], reference(qdq_matmul_model(16, 8), x))
