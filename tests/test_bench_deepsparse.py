"""The DeepSparse benchmark peer's graph forms (onnxq.apps.bench_deepsparse), checked on stock onnxruntime: DeepSparse
itself lives in its own virtualenv and is not needed here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _stock import stock_session

import onnxq
import onnxq.ep as ep
from onnxq.apps.bench_deepsparse import DeepSparseWorker, deepsparse_form
from onnxq.apps.bench_sparse import SparseReport, SparseResult, markdown, pruned_models
from onnxq.apps.model_builders import qdq_act_matmul_model, sample_inputs
from onnxq.core.errors import OnnxqError

ROOT = Path(__file__).resolve().parents[1]


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _exact(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The Q/DQ model's exact integer result: the onnxq EP (bit-exact with the integer reference on every CPU; stock
    onnxruntime's own integer route saturates on AVX2, see tests/_stock.py)."""
    return ep.session(model.SerializeToString()).run(None, feeds)[0]


@pytest.mark.parametrize("packed", [False, True])
def test_int8_form_is_exact_matmulinteger(packed: bool) -> None:
    dense, pk = pruned_models(64, 48, 0.75)
    x = np.random.default_rng(3).standard_normal((1, 20, 64)).astype(np.float32)
    ref = _exact(dense, {"x": x})
    m, info = deepsparse_form(pk if packed else dense, "int8", {"x": [1, 20, 64]})
    assert info["matmuls_converted"] == 1
    assert [n.op_type for n in m.graph.node] == ["QuantizeLinear", "MatMulInteger", "Cast", "Mul"]
    assert m.ir_version == 8 and [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [13]
    assert not m.functions and all(o.domain in ("", "ai.onnx") for o in m.opset_import)
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 20, 64]
    w = next(i for i in m.graph.initializer if i.data_type == onnx.TensorProto.UINT8 and len(i.dims) == 2)
    assert list(w.dims) == [64, 48]  # [K, N], int8 + 128
    assert info["weight_zero_fraction"] == pytest.approx(0.75, abs=0.01)
    onnx.checker.check_model(m)
    np.testing.assert_array_equal(_run(m, {"x": x}), ref)  # same int32 accumulator, same per-channel rescale


def test_fp32_form_has_the_same_pruned_weights_and_no_qdq() -> None:
    dense, _ = pruned_models(64, 48, 0.75)
    m, _ = deepsparse_form(dense, "fp32")
    assert [n.op_type for n in m.graph.node] == ["MatMul"]
    (w,) = [onnx.numpy_helper.to_array(i) for i in m.graph.initializer]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in dense.graph.initializer}
    np.testing.assert_array_equal(w, inits["w"].astype(np.float32) * inits["w_scale"])
    assert np.mean(w == 0) == pytest.approx(0.75, abs=0.01)


def test_encoder_int8_form_converts_every_matmul() -> None:
    q = onnx.load(ROOT / "sample_models" / "tiny_encoder.int8.onnx")
    sp = onnxq.sparsify(q, None, onnxq.SparsifyConfig(sparsity=0.9)).model
    feeds = sample_inputs(q, batch=1, seq=16)
    ref = stock_session(sp.SerializeToString()).run(None, feeds)[0]  # ONNX's float route (tests/_stock.py)
    prod = {o: n.op_type for n in q.graph.node for o in n.output}
    n_matmul = sum(n.op_type == "MatMul" for n in q.graph.node)
    n_qdq = sum(n.op_type == "MatMul" and all(prod.get(i) == "DequantizeLinear" for i in n.input)
                for n in q.graph.node)
    assert n_qdq >= 6
    for form in ("int8", "fp32"):
        m, info = deepsparse_form(sp, form, {k: v.shape for k, v in feeds.items()})
        onnx.checker.check_model(m)
        ops = info["ops"]
        if form == "int8":
            assert info["matmuls_converted"] == n_qdq == ops["MatMulInteger"]
            assert ops.get("MatMul", 0) == n_matmul - n_qdq and "DequantizeLinear" not in ops
            assert info["weight_zero_fraction"] == pytest.approx(0.9, abs=0.02)
        else:
            assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops
        y = _run(m, feeds)
        cos = float(np.dot(y.ravel(), ref.ravel()) / np.linalg.norm(y) / np.linalg.norm(ref))
        assert cos > (0.9999 if form == "int8" else 0.99), (form, cos)


def test_bad_form_and_failed_worker_say_what_happened() -> None:
    dense, _ = pruned_models(16, 8, 0.5)
    with pytest.raises(OnnxqError, match="form must be"):
        deepsparse_form(dense, "int4")
    m, _ = deepsparse_form(dense, "int8", {"x": [1, 4, 16]})
    # this interpreter has no deepsparse: the worker must fail with its error, not hang
    with pytest.raises(OnnxqError, match="DeepSparse worker failed.*deepsparse"):
        DeepSparseWorker(sys.executable, m, [np.zeros((1, 4, 16), np.float32)], 1)


def test_markdown_has_deepsparse_columns() -> None:
    detail = {"form": "int8", "ops": ["QuantizeLinear", "MatMulInteger", "Cast", "Mul"],
              "fraction_of_supported_ops": 1.0, "max_abs_diff_vs_ort": 0.0}
    rs = [SparseResult(v, 128, 768, 768, 0.9, 1, t, t, 2 * 128 * 768 * 768 / t / 1e9)
          for v, t in (("ort-int8-dense", 0.4), ("onnxq-dense", 0.4), ("onnxq-sparse", 0.1))]
    rs += [SparseResult("deepsparse", 128, 768, 768, 0.9, 1, 0.2, 0.2, 0.9, "", detail),
           SparseResult("deepsparse-fp32", 128, 768, 768, 0.9, 1, float("nan"), float("nan"), float("nan"),
                        "failed: boom")]
    env = {"cpu": "x", "logical_cpus": 2, "onnxruntime": "1", "onnxq": "0", "date": "d", "loadavg_start": (0, 0, 0)}
    text = markdown(SparseReport({}, env, rs))
    assert "| DeepSparse INT8 | DeepSparse FP32 |" in text
    assert "| 2.00× |  |" in text  # sparse / DeepSparse INT8, and no FP32 ratio
    assert "QuantizeLinear + MatMulInteger + Cast + Mul" in text and "deepsparse-fp32 did not run: failed: boom" in text
    rs[2].passes_ms, rs[3].passes_ms = [0.1, 0.1, 0.2], [0.2, 0.3, 0.2]
    text = markdown(SparseReport({}, env, rs))
    assert "| 90% | deepsparse | 2.00–2.00× | 2.00–2.00× | 2.00–2.00× |" in text  # paired: median(2, 3, 1)


@pytest.mark.parametrize("fmt", ["u8", "s8"])
def test_activation_matmul_becomes_matmulinteger(fmt: str) -> None:
    model = qdq_act_matmul_model([1, 2, 8, 16], [1, 2, 16, 8], fmt=fmt)
    rng = np.random.default_rng(0)
    feeds = {"a": rng.standard_normal((1, 2, 8, 16)).astype(np.float32),
             "b": rng.standard_normal((1, 2, 16, 8)).astype(np.float32)}
    m, info = deepsparse_form(model, "int8", {k: v.shape for k, v in feeds.items()})
    assert info["matmuls_converted"] == 1 and "MatMulInteger" in info["ops"] and "MatMul" not in info["ops"]
    np.testing.assert_allclose(_run(m, feeds), _run(model, feeds), rtol=1e-6, atol=1e-6)


def test_per_tensor_weights_keep_the_zero_pattern() -> None:
    dense, _ = pruned_models(64, 48, 0.8)
    x = np.random.default_rng(4).standard_normal((1, 8, 64)).astype(np.float32)
    exact, _ = deepsparse_form(dense, "int8", {"x": [1, 8, 64]})
    pt, info = deepsparse_form(dense, "int8", {"x": [1, 8, 64]}, per_tensor_weights=True)

    def weight(m: onnx.ModelProto) -> np.ndarray:
        return next(onnx.numpy_helper.to_array(i) for i in m.graph.initializer if len(i.dims) == 2)

    np.testing.assert_array_equal(weight(pt) == 128, weight(exact) == 128)
    rescale = next(onnx.numpy_helper.to_array(i) for i in pt.graph.initializer if i.name.endswith(".rescale"))
    assert rescale.shape == ()
    ref = _exact(dense, {"x": x})
    assert np.abs(_run(pt, {"x": x}) - ref).max() < 0.05 * np.abs(ref).max()
