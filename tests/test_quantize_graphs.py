"""The quantizer on the graphs real exporters write: Constant-node weights, transposed weights (Gemm transB,
Transpose-fed MatMul), shared weights, Conv, embedding Gathers and attention, an opset-13 input, external
data. Every output passes onnx.checker (full), runs on stock onnxruntime close to the float model, and where
the onnxq EP claims the MatMuls, the EP agrees with stock onnxruntime."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _qmodels import (
    attention_feeds,
    attention_model,
    constant_node_weights,
    conv_model,
    float_feeds,
    matmul_chain,
    shared_weights,
    transposed_weights,
)
from _stock import stock_session

import onnxq
import onnxq.ep as ep
from onnxq.apps.model_builders import tiny_encoder_model
from onnxq.core.model_io import save_model

FORMATS = ["fp8-e4m3", "fp8-e5m2", "int8"]
FP8_TYPES = {onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E5M2}
ONE_BYTE = FP8_TYPES | {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}


pytestmark = pytest.mark.usefixtures("fp8_kernel_everywhere")


def _run(model: onnx.ModelProto, feed: dict) -> list[np.ndarray]:
    # ONNX's float route: stock onnxruntime's fused INT8 kernel depends on the CPU (it saturates on AVX2, _stock.py),
    # and these tests measure the quantized model, not that kernel
    return stock_session(model.SerializeToString()).run(None, feed)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _quantize(model, feeds, fmt="fp8-e4m3", **kw):  # type: ignore[no-untyped-def]
    cfg = onnxq.QuantConfig.from_recipe(fmt, **kw)
    r = onnxq.quantize(model, None, cfg, feeds)
    onnx.checker.check_model(r.model, full_check=True)
    return r


def _check_close(model, q, feeds, min_cos=0.99):  # type: ignore[no-untyped-def]
    for a, b in zip(_run(model, feeds[0]), _run(q, feeds[0]), strict=True):
        assert np.all(np.isfinite(b))
        assert _cos(a, b) > min_cos


def _dq_weight_inputs(q: onnx.ModelProto) -> Counter:
    inits = {t.name: t for t in q.graph.initializer}
    return Counter(n.input[0] for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits)


@pytest.mark.parametrize("fmt", FORMATS)
def test_matmul_chain_all_formats(fmt):
    m = matmul_chain()
    feeds = float_feeds(m, 3, b=2, s=5)
    r = _quantize(m, feeds, fmt)
    q = r.model
    assert next(o.version for o in q.opset_import if o.domain in ("", "ai.onnx")) == 21
    assert r.weights_quantized == 2 and r.activations_quantized == 2
    wts = [t for t in q.graph.initializer if t.name.endswith("_quantized")]
    assert {t.data_type for t in wts} == {{"int8": onnx.TensorProto.INT8, "fp8-e4m3": onnx.TensorProto.FLOAT8E4M3FN,
                                           "fp8-e5m2": onnx.TensorProto.FLOAT8E5M2}[fmt]}
    _check_close(m, q, feeds, 0.995 if fmt != "fp8-e5m2" else 0.98)
    qs = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    if fmt.startswith("fp8"):
        assert all(any(a.name == "saturate" and a.i == 1 for a in n.attribute) for n in qs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_ep_claims_quantizer_output_and_matches_stock_onnxruntime(fmt):
    m = tiny_encoder_model()
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((2, 8, 64)).astype(np.float32)} for _ in range(3)]
    q = _quantize(m, feeds, fmt).model
    data = q.SerializeToString()
    stock = stock_session(data)
    sess = ep.session(data)
    claimed = [n for n in ep.assigned_nodes(sess).get(ep.EP_NAME, []) if n.split(":")[0] in ("MatMul", "Gemm")]
    assert len(claimed) >= 6, claimed  # at least every weight MatMul
    a, b = stock.run(None, feeds[0])[0], sess.run(None, feeds[0])[0]
    tol = 1e-5 if fmt == "int8" else 1e-4
    assert np.max(np.abs(a - b)) <= tol * max(1.0, float(np.abs(a).max()))


def test_weight_only_fp8_needs_no_data_and_runs_on_the_ep():
    m = tiny_encoder_model()
    r = onnxq.quantize(m, None, onnxq.QuantConfig.from_recipe("fp8-e4m3-weight-only"))
    q = r.model
    assert not any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    assert r.calibration_samples == 0
    sess = ep.session(q.SerializeToString())
    assert any(n.startswith(("MatMul", "Gemm")) for n in ep.assigned_nodes(sess).get(ep.EP_NAME, []))


def test_constant_node_weights():
    m = constant_node_weights()
    feeds = float_feeds(m, 2, b=4)
    r = _quantize(m, feeds)
    assert r.weights_quantized == 1
    assert not any(n.op_type == "Constant" for n in r.model.graph.node)
    assert not any(t.data_type == onnx.TensorProto.FLOAT and t.name == "Wc" for t in r.model.graph.initializer)
    _check_close(m, r.model, feeds)


@pytest.mark.parametrize("fmt", ["fp8-e4m3", "int8"])
def test_transposed_weights(fmt):
    m = transposed_weights()
    feeds = float_feeds(m, 2, b=4)
    r = _quantize(m, feeds, fmt)
    q = r.model
    assert r.weights_quantized == 2
    assert not any(n.op_type == "Transpose" for n in q.graph.node)  # folded into the initializer
    gemm_dq = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.output[0] in
                   next(g for g in q.graph.node if g.op_type == "Gemm").input)
    assert next(a.i for a in gemm_dq.attribute if a.name == "axis") == 0  # [N, K]: channels on axis 0
    scale = next(t for t in q.graph.initializer if t.name == gemm_dq.input[1])
    assert list(scale.dims) == [24]
    _check_close(m, q, feeds)
    sess = ep.session(q.SerializeToString())
    stock = stock_session(q.SerializeToString())
    np.testing.assert_allclose(sess.run(None, feeds[0])[0], stock.run(None, feeds[0])[0], rtol=1e-4, atol=1e-4)


def test_shared_weight_quantized_once_each_consumer_its_own_dq():
    m = shared_weights()
    feeds = float_feeds(m, 2, b=4)
    r = _quantize(m, feeds)
    q = r.model
    quantized = [t for t in q.graph.initializer if t.data_type in ONE_BYTE and t.name.startswith("Wshared")
                 and not t.name.endswith("zero_point")]
    assert len(quantized) == 1 and r.weights_quantized == 1
    assert _dq_weight_inputs(q)[quantized[0].name] == 2
    assert not any(t.name == "Wshared" for t in q.graph.initializer)  # the float copy is gone
    _check_close(m, q, feeds)
    # the Tanh output feeding mm_b used its fixed range [-1, 1], not calibration
    tanh_scale = next(t for t in q.graph.initializer if t.name == "t_scale")
    assert np.isclose(onnx.numpy_helper.to_array(tanh_scale), 1 / 448)


@pytest.mark.parametrize("fmt", FORMATS)
def test_conv(fmt):
    m = conv_model()
    feeds = float_feeds(m, 2, b=2)
    r = _quantize(m, feeds, fmt)
    assert r.weights_quantized == 2
    dq = [n for n in r.model.graph.node if n.op_type == "DequantizeLinear" and "C1" in n.input[0]]
    assert dq and next(a.i for a in dq[0].attribute if a.name == "axis") == 0
    _check_close(m, r.model, feeds, 0.99 if fmt != "fp8-e5m2" else 0.97)


@pytest.mark.parametrize("fmt", FORMATS)
def test_attention_embedding_softmax_and_constant_tensor(fmt):
    m = attention_model()
    feeds = attention_feeds(3)
    r = _quantize(m, feeds, fmt)
    q = r.model
    assert "scores" not in r.skipped and "context" not in r.skipped
    # the Softmax output has its fixed range; the constant-zero tensor got a safe non-zero scale
    inits = {t.name: onnx.numpy_helper.to_array(t) if t.data_type not in FP8_TYPES else None
             for t in q.graph.initializer}
    p_scale = float(inits["p_scale"])
    assert np.isclose(p_scale, 1 / 448 if fmt == "fp8-e4m3" else 1 / 57344 if fmt == "fp8-e5m2" else 1 / 255)
    z_scale = float(inits.get("z_scale", inits.get("z_smoothed_scale")))  # int8 smooths z (s = 1 for zeros)
    assert z_scale > 0 and np.isfinite(z_scale)
    assert any("constant 0" in w for w in r.warnings)
    # the embedding table is stored in 1 byte, per row
    emb = next(t for t in q.graph.initializer if t.name.startswith("emb") and t.data_type in ONE_BYTE)
    assert list(emb.dims) == [50, 32]
    out = _run(q, feeds[0])[0]
    assert np.all(np.isfinite(out))
    _check_close(m, q, feeds, 0.95)


def test_old_opset_model_is_upgraded():
    m = attention_model(opset=13)
    assert m.opset_import[0].version == 13
    feeds = attention_feeds(2)
    r = _quantize(m, feeds)
    assert r.model.opset_import[0].version == 21 and r.model.ir_version >= 10
    _check_close(m, r.model, feeds, 0.95)


def test_weights_shrink_to_a_quarter_and_input_never_modified(tmp_path: Path):
    m = attention_model(d=96)
    src = tmp_path / "in.onnx"
    save_model(m, src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    before = m.SerializeToString()
    out = tmp_path / "out.onnx"
    r = onnxq.quantize(str(src), out, onnxq.QuantConfig.from_recipe("int8"), attention_feeds(2))
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    assert m.SerializeToString() == before
    assert r.weight_bytes_after < 0.3 * r.weight_bytes_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx", "out.onnx"]
    onnx.checker.check_model(str(out), full_check=True)


def test_external_data_round_trip(tmp_path: Path):
    m = matmul_chain(k=64, n=96)
    src = tmp_path / "ext.onnx"
    save_model(m, src, external_data=True)
    assert (tmp_path / "ext.onnx.data").exists()
    feeds = float_feeds(m, 2, b=2, s=3)
    out = tmp_path / "q.onnx"
    cfg = onnxq.QuantConfig.from_recipe("fp8-e4m3", external_data=True)
    onnxq.quantize(src, out, cfg, feeds)
    assert (tmp_path / "q.onnx.data").exists()
    loaded = onnx.load(str(out), load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in loaded.graph.initializer)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ref = _run(m, feeds[0])[0]
    assert _cos(ref, sess.run(None, feeds[0])[0]) > 0.995


def test_exclusions_by_name_regex_and_op_type():
    m = attention_model()
    feeds = attention_feeds(2)
    r = _quantize(m, feeds, exclude=("q_proj", "[kv]_pr.*"), exclude_op_types=("Gather",))
    assert {"q_proj", "k_proj", "v_proj", "embed"} <= set(r.skipped)
    assert "excluded by pattern" in r.skipped["k_proj"]
    names = {n.name for n in r.model.graph.node}
    assert not any(n.startswith("q_proj/") for n in names)


def test_wide_recipe_quantizes_add_inputs():
    m = matmul_chain()
    feeds = float_feeds(m, 2, b=2, s=5)
    r = _quantize(m, feeds, "fp8-e4m3-wide")
    add = next(n for n in r.model.graph.node if n.op_type == "Add")
    producers = {o: n.op_type for n in r.model.graph.node for o in n.output}
    assert producers[add.input[0]] == "DequantizeLinear"


def test_accuracy_target_falls_back_the_most_sensitive_layers():
    m = attention_model()
    feeds = attention_feeds(4)
    base = _quantize(m, feeds, "fp8-e5m2")
    # measure the fully quantized fidelity, then ask for better than that
    from onnxq.pipeline.accuracy import _Scorer

    full = _Scorer(m, feeds, "cosine")(base.model)
    target = 1 - (1 - full) / 4
    r = _quantize(m, feeds, "fp8-e5m2", accuracy_target=target, accuracy_samples=4)
    assert r.accuracy_before == pytest.approx(full, abs=1e-9)
    assert r.accuracy_after >= target
    assert 1 <= len(r.fallbacks) < base.layers_quantized
    assert all("needed to reach the target" in f["reason"] for f in r.fallbacks)
    assert r.layers_quantized == base.layers_quantized - len(r.fallbacks)
    for f in r.fallbacks:
        assert r.skipped[f["layer"]] == "kept in float for accuracy"


def test_over_2gib_code_paths(tmp_path: Path, monkeypatch):
    """Models over protobuf's 2 GiB take other routes (calibration session from a private temporary directory,
    checker on a skeleton, external data out); force them with a tiny limit and check the result and that
    nothing is left behind, in the CWD or the temporary directory."""
    import tempfile

    import onnxq.calibration.runner as runner
    import onnxq.core.model_io as model_io
    import onnxq.passes.finalize as finalize

    monkeypatch.setattr(runner, "_PROTOBUF_LIMIT", 1000)
    monkeypatch.setattr(finalize, "_PROTOBUF_LIMIT", 1000)
    monkeypatch.setattr(model_io, "_PROTOBUF_LIMIT", 1000)
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(tmp_path)
    m = matmul_chain(k=64, n=96)
    feeds = float_feeds(m, 2, b=2, s=3)
    out = tmp_path / "big.onnx"
    onnxq.quantize(m, out, onnxq.QuantConfig(), feeds)
    assert (tmp_path / "big.onnx.data").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data", "tmpdir"]
    assert list(scratch.iterdir()) == []
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert _cos(_run(m, feeds[0])[0], sess.run(None, feeds[0])[0]) > 0.995


def test_smoothing_moves_outlier_channels_into_weights():
    """INT8 per-tensor activations with a few outlier channels (BERT FFN inputs): SmoothQuant scaling recovers
    most of the fidelity; the graph stays Mul -> Q -> DQ -> MatMul, which the EP still claims."""
    m = matmul_chain(k=64, n=64)
    boost = np.ones(64, np.float32)
    boost[[3, 40]] = 80.0

    def feeds(n: int, seed: int) -> list[dict]:
        r = np.random.default_rng(seed)
        return [{"x": (r.standard_normal((2, 16, 64)) * boost).astype(np.float32)} for _ in range(n)]

    calib, test = feeds(4, 1), feeds(2, 2)
    plain = _quantize(m, calib, "int8", smooth_alpha=0).model
    r = _quantize(m, calib, "int8")  # the recipe smooths (alpha 0.5)
    assert any("smoothing" in n for n in r.notes)
    assert sum(n.op_type == "Mul" for n in r.model.graph.node) == 2  # one per smoothed tensor (x and h2)
    ref = _run(m, test[0])[0]
    err_plain = np.sum((_run(plain, test[0])[0] - ref) ** 2)
    err_smooth = np.sum((_run(r.model, test[0])[0] - ref) ** 2)
    assert err_smooth < err_plain / 4
    sess = ep.session(r.model.SerializeToString())
    claimed = [n for n in ep.assigned_nodes(sess).get(ep.EP_NAME, []) if n.startswith("MatMul")]
    assert len(claimed) == 2
    stock = stock_session(r.model.SerializeToString())
    np.testing.assert_allclose(sess.run(None, test[0])[0], stock.run(None, test[0])[0], rtol=1e-5, atol=1e-5)
