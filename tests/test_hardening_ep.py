"""Hardening, part 2: the onnxq EP against hostile models.

Scale or zero-point lengths that do not match the weight, wrong dtypes, out-of-range axes and attributes, enormous
declared dimensions, shape claims that lie, scales whose product overflows: each model either fails session
creation with an onnxruntime error, or opens with the offending group left to onnxruntime and runs exactly like
stock onnxruntime. Never a crash, never different numbers: every case goes through the fuzzer's oracle
(tools/fuzz/harness.py, strict mode). Under tools/run_sanitized_tests.sh these run with AddressSanitizer + UBSan,
which also catches out-of-bounds reads that would not crash. The committed fuzz corpus is replayed here too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _stock import stock_int8_saturates
from onnx import TensorProto, helper, numpy_helper

import onnxq.ep as ep
from onnxq.apps.model_builders import fp8_qdq_matmul_model, fp8_tensor, qdq_act_matmul_model, qdq_matmul_model

FUZZ = Path(__file__).resolve().parent.parent / "tools" / "fuzz"
sys.path.insert(0, str(FUZZ))
import harness  # noqa: E402

EP = ep.EP_NAME


pytestmark = [pytest.mark.every_isa, pytest.mark.usefixtures("fp8_kernel_everywhere")]


def _copy(m: onnx.ModelProto) -> onnx.ModelProto:
    c = onnx.ModelProto()
    c.CopyFrom(m)
    return c


def _init(m: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in m.graph.initializer if t.name == name)


def _set(m: onnx.ModelProto, name: str, value: np.ndarray | onnx.TensorProto) -> onnx.ModelProto:
    t = value if isinstance(value, onnx.TensorProto) else numpy_helper.from_array(value, name)
    t.name = name
    _init(m, name).CopyFrom(t)
    return m


def _node(m: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in m.graph.node if n.name == name)


def _set_attr(m: onnx.ModelProto, node: str, **attrs: object) -> onnx.ModelProto:
    n = _node(m, node)
    for k, v in attrs.items():
        for i, a in enumerate(n.attribute):
            if a.name == k:
                del n.attribute[i]
                break
        n.attribute.append(helper.make_attribute(k, v))
    return m


def int8(**kw: object) -> onnx.ModelProto:
    return _copy(qdq_matmul_model(16, 8, **kw))  # type: ignore[arg-type]


def fp8(**kw: object) -> onnx.ModelProto:
    return _copy(fp8_qdq_matmul_model(16, 8, **kw))  # type: ignore[arg-type]


def act(fmt: str = "u8") -> onnx.ModelProto:
    return _copy(qdq_act_matmul_model([2, 4, 8], [2, 8, 5], fmt=fmt))


def _w_scale(m: onnx.ModelProto) -> np.ndarray:
    return numpy_helper.to_array(_init(m, "w_scale"))


def gemm_dq_bias(bias_scale_len: int = 8, bias_zp: int | None = None, bias_len: int = 8) -> onnx.ModelProto:
    """Gemm(DQ(x), DQ(w), DQ(b_int32)) as onnxruntime's MatMulAddFusion writes it, with adjustable bias parts."""
    k, n = 16, 8
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(128, np.uint8), "x_zp"),
             numpy_helper.from_array(rng.integers(-127, 128, (k, n)).astype(np.int8), "w"),
             numpy_helper.from_array(np.full(n, 0.01, np.float32), "w_scale"),
             numpy_helper.from_array(rng.integers(-300, 300, bias_len).astype(np.int32), "b_q"),
             numpy_helper.from_array(np.full(bias_scale_len, 2e-4, np.float32), "b_scale")]
    b_inputs = ["b_q", "b_scale"]
    if bias_zp is not None:
        inits.append(numpy_helper.from_array(np.full(bias_scale_len, bias_zp, np.int32), "b_zp"))
        b_inputs.append("b_zp")
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xdq"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["w", "w_scale"], ["wdq"], name="dq_w", axis=1),
             helper.make_node("DequantizeLinear", b_inputs, ["b"], name="dq_b", axis=0),
             helper.make_node("Gemm", ["xdq", "wdq", "b"], ["y"], name="gemm")]
    g = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def _enormous_weight_dims(m: onnx.ModelProto) -> onnx.ModelProto:
    t = _init(m, "w")
    del t.dims[:]
    t.dims.extend([2**31, 8])  # 16 GiB declared, 128 bytes present
    return m


def _enormous_input_dim(m: onnx.ModelProto) -> onnx.ModelProto:
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2**40
    return m


def _value_info_lie(m: onnx.ModelProto) -> onnx.ModelProto:
    m.graph.value_info.append(helper.make_tensor_value_info("x_dq", TensorProto.FLOAT, [1, 3]))
    m.graph.value_info.append(helper.make_tensor_value_info("w_dq", TensorProto.FLOAT, [5]))
    return m


def _act_broadcast_huge(m: onnx.ModelProto) -> onnx.ModelProto:
    """[2^20, 1, 1, 8] x [1, 2^20, 8, 1]: inputs of 32 MiB, an output of 2^40 floats that cannot be allocated."""
    del m.graph.input[0].type.tensor_type.shape.dim[:]
    del m.graph.input[1].type.tensor_type.shape.dim[:]
    for d in (2**20, 1, 1, 8):
        m.graph.input[0].type.tensor_type.shape.dim.add().dim_value = d
    for d in (1, 2**20, 8, 1):
        m.graph.input[1].type.tensor_type.shape.dim.add().dim_value = d
    return m


def _dangling(m: onnx.ModelProto, keep: str) -> onnx.ModelProto:
    """The claimed group's output is read by nothing: onnxruntime gives the EP a null output value (found by the
    fuzzer; the EP dereferenced it and crashed the process)."""
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info(keep, TensorProto.FLOAT, None))
    return m


def sparse_e5m2_with_inf() -> onnx.ModelProto:
    """Block-sparse E5M2 weights holding +-inf: the file's own function body saturates them to +-57344 (its FP8 ->
    float16 -> FP8 Cast), so the EP must too (found by the fuzzer: the EP used inf, onnxruntime 57344)."""
    from onnxq import SparsifyConfig, sparsify

    m = sparsify(fp8_qdq_matmul_model(16, 8, weight_format="e5m2"), None, SparsifyConfig(sparsity=0.5,
                                                                                        min_elements=0)).model
    t = _init(m, "w.values")
    raw = bytearray(t.raw_data)
    raw[0], raw[5] = 0x7C, 0xFC
    t.raw_data = bytes(raw)
    return m


CASES: dict[str, Callable[[], onnx.ModelProto]] = {
    # weight scale / zero point lengths that do not match the weight
    "w-scale-N+1": lambda: _set(int8(), "w_scale", np.full(9, 0.01, np.float32)),
    "w-scale-N-1": lambda: _set(int8(), "w_scale", np.full(7, 0.01, np.float32)),
    "w-scale-empty": lambda: _set(int8(), "w_scale", np.zeros(0, np.float32)),
    "w-scale-rank2": lambda: _set(int8(), "w_scale", _w_scale(int8()).reshape(1, 8)),
    "w-scale-on-K-axis": lambda: _set(int8(), "w_scale", np.full(16, 0.01, np.float32)),
    "w-zp-shorter-than-scale": lambda: _set(int8(weight_zero_point=True), "w_zp", np.zeros(3, np.int8)),
    "w-zp-per-tensor-scale-per-column": lambda: _set(int8(weight_zero_point=True), "w_zp", np.zeros((), np.int8)),
    "w-zp-rank-differs": lambda: _set(int8(weight_zero_point=True), "w_zp", np.zeros((8, 1), np.int8)),
    # wrong dtypes
    "w-uint8": lambda: _set(int8(), "w", numpy_helper.to_array(_init(int8(), "w")).view(np.uint8)),
    "w-int16": lambda: _set(int8(), "w", numpy_helper.to_array(_init(int8(), "w")).astype(np.int16)),
    "w-int32": lambda: _set(int8(), "w", numpy_helper.to_array(_init(int8(), "w")).astype(np.int32)),
    "w-scale-float16": lambda: _set(int8(), "w_scale", _w_scale(int8()).astype(np.float16)),
    "w-scale-double": lambda: _set(int8(), "w_scale", _w_scale(int8()).astype(np.float64)),
    "w-zp-uint8-for-int8": lambda: _set(int8(weight_zero_point=True), "w_zp", np.zeros(8, np.uint8)),
    "x-zp-int8-for-uint8": lambda: _set(int8(), "x_zp", np.array(3, np.int8)),
    "x-scale-vector": lambda: _set(int8(), "x_scale", np.full(16, 0.02, np.float32)),
    "bias-int64": lambda: _set(int8(), "b", np.arange(8, dtype=np.int64)),
    "bias-N+1": lambda: _set(int8(), "b", np.ones(9, np.float32)),
    "fp8-w-e4m3fnuz": lambda: _set(fp8(), "w", helper.make_tensor(
        "w", TensorProto.FLOAT8E4M3FNUZ, [16, 8], bytes(range(128)), raw=True)),
    "fp8-w-zp-nonzero": lambda: _set(fp8(), "w_zp", fp8_tensor(np.full(8, 1.0, np.float32), "w_zp", "e4m3fn")),
    "fp8-x-zp-other-format": lambda: _set(fp8(activation_format="e4m3fn"), "x_zp",
                                          fp8_tensor(np.zeros((), np.float32), "x_zp", "e5m2")),
    "act-sides-int8-and-uint8": lambda: _set(act("u8"), "b_zp", np.array(0, np.int8)),
    # attributes out of range
    "w-axis-5": lambda: _set_attr(int8(), "dequant_w", axis=5),
    "w-axis-minus-3": lambda: _set_attr(int8(), "dequant_w", axis=-3),
    "w-axis-0-per-column": lambda: _set_attr(int8(), "dequant_w", axis=0),
    "w-block-size": lambda: _set_attr(int8(), "dequant_w", block_size=2),
    "w-block-size-negative": lambda: _set_attr(int8(), "dequant_w", block_size=-4),
    "q-saturate-0-fp8": lambda: _set_attr(fp8(activation_format="e4m3fn"), "quant_x", saturate=0),
    "q-output-dtype-conflict": lambda: _set_attr(int8(), "quant_x", output_dtype=TensorProto.INT8),
    # Gemm: bias parts that do not match
    "gemm-dq-bias-scale-3": lambda: gemm_dq_bias(bias_scale_len=3),
    "gemm-dq-bias-short": lambda: gemm_dq_bias(bias_len=5),
    "gemm-dq-bias-zp-nonzero": lambda: gemm_dq_bias(bias_zp=7),
    # enormous dimensions
    "w-declared-2^31-rows": lambda: _enormous_weight_dims(int8()),
    "x-declared-2^40-rows": lambda: _enormous_input_dim(int8()),
    "w-K-over-int32-bound": lambda: _copy(qdq_matmul_model(33026, 1, bias=False)),
    "act-broadcast-to-2^40-outputs": lambda: _act_broadcast_huge(act("u8")),
    # shape claims that lie
    "value-info-lies": lambda: _value_info_lie(int8(rank=3)),
    # a claimed group whose output nothing reads (null output value)
    "unused-output-int8-gemm": lambda: _dangling(int8(), "x_dq"),
    "unused-output-int8-matmul": lambda: _dangling(int8(bias=False), "x_dq"),
    "unused-output-fp8": lambda: _dangling(fp8(activation_format="e4m3fn"), "x_dq"),
    "unused-output-act-matmul": lambda: _dangling(act("u8"), "a_dq"),
    # block-sparse values the file's function body changes (saturating Cast)
    "sparse-e5m2-inf-values": sparse_e5m2_with_inf,
    # scales so large that dequantized values overflow (onnxruntime: inf / NaN; the EP must not make them finite)
    "w-scale-dequantized-overflow": lambda: _set(int8(), "w_scale", np.array([0.01] * 5 + [3e36] + [0.01] * 2,
                                                                              np.float32)),
    "x-scale-dequantized-overflow": lambda: _set(int8(), "x_scale", np.array(1e36, np.float32)),
    "fp8-e5m2-scale-dequantized-overflow": lambda: _set(fp8(weight_format="e5m2"), "w_scale",
                                                        np.full(8, 1e34, np.float32)),
    # scales whose product overflows float (found by the fuzzer: 0 * inf = NaN where onnxruntime gives 0)
    "scale-product-overflow-weight": lambda: _set(_set(int8(), "x_scale", np.array(3e38, np.float32)), "w_scale",
                                                  np.full(8, 4.0, np.float32)),
    "scale-product-overflow-act": lambda: _set(_set(act("s8"), "a_scale", np.array(3e38, np.float32)), "b_scale",
                                               np.array(3e38, np.float32)),
}


# Where stock onnxruntime's fused INT8 kernel saturates on this CPU (AVX2; tests/_stock.py), the harness judges the EP
# against ONNX's float route (onnxruntime with optimizations off) and says so in the label; elsewhere only "ran".
RAN_VS_ONNX = {"ran:onnxruntime-int8-saturates"} if stock_int8_saturates() else set()


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_model_fails_cleanly_or_matches_onnxruntime(name: str) -> None:
    outcome = harness.check(CASES[name]().SerializeToString(), strict=True)
    assert outcome.label in {"ran", "both-reject", "both-run-error", "skip:input-too-big", *RAN_VS_ONNX}, outcome


# Groups the EP must leave to onnxruntime (the session opens; the MatMul/Gemm is not the EP's).
NOT_CLAIMED = ["w-scale-dequantized-overflow", "x-scale-dequantized-overflow",
               "w-scale-N+1", "w-scale-N-1", "w-scale-rank2", "w-scale-on-K-axis", "w-zp-shorter-than-scale",
               "w-zp-per-tensor-scale-per-column", "w-zp-rank-differs", "w-uint8", "w-int16", "w-int32",
               "w-scale-float16", "w-scale-double", "w-axis-0-per-column", "w-block-size", "fp8-w-zp-nonzero",
               "q-saturate-0-fp8", "w-K-over-int32-bound", "scale-product-overflow-weight",
               "scale-product-overflow-act"]


@pytest.mark.parametrize("name", NOT_CLAIMED)
def test_hostile_group_is_left_to_onnxruntime(name: str) -> None:
    data = CASES[name]().SerializeToString()
    try:
        sess = ep.session(data)
    except harness.ORT_ERRORS:
        return  # onnxruntime rejects the model itself: nothing to claim
    claimed = {n.split(":")[0] for n in ep.assigned_nodes(sess).get(EP, [])}
    if name == "q-saturate-0-fp8":  # only the Q stays out; DQ + MatMul may still be claimed at "DQ only" depth
        assert "QuantizeLinear" not in claimed
        return
    assert not claimed & {"MatMul", "Gemm"}, claimed


@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("unused-output")])
def test_unused_group_output_is_claimed_and_runs(name: str) -> None:
    """The group is still the EP's (so the null-output path is what runs), and the run succeeds."""
    outcome = harness.check(CASES[name]().SerializeToString(), strict=True)
    assert outcome.label in {"ran", *RAN_VS_ONNX} and {"MatMul", "Gemm"} & set(outcome.claimed), outcome


def test_sparse_e5m2_inf_is_claimed_and_saturated_like_the_function_body() -> None:
    outcome = harness.check(sparse_e5m2_with_inf().SerializeToString(), strict=True)
    assert outcome.label == "ran" and "BlockSparseExpandE5M2" in outcome.claimed, outcome


def test_scale_product_overflow_regression() -> None:
    """Zero activations with a finite scale product that overflows: onnxruntime gives 0, so must the session."""
    m = CASES["scale-product-overflow-weight"]()
    _set(m, "b", np.zeros(8, np.float32))
    data = m.SerializeToString()
    x = np.zeros((3, 16), np.float32)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ep.session(data).run(None, {"x": x})[0]
    assert np.all(np.isfinite(ref)) and np.array_equal(got, ref)


def test_gemm_dq_bias_scale_mismatch_message_is_from_onnxruntime() -> None:
    """A model onnxruntime itself refuses is refused with onnxruntime's own one-line error, not a crash."""
    data = gemm_dq_bias(bias_scale_len=3).SerializeToString()
    errors = []
    for make in (lambda: ort.InferenceSession(data, providers=["CPUExecutionProvider"]), lambda: ep.session(data)):
        try:
            s = make()
            s.run(None, {"x": np.ones((2, 16), np.float32)})
        except harness.ORT_ERRORS as e:
            errors.append(type(e).__name__)
    assert len(errors) in (0, 2), errors  # both accept, or both refuse


@pytest.mark.skipif(os.environ.get("ONNXQ_SANITIZED") == "1",
                    reason="ASan aborts on a failed throwing operator new (onnxruntime's 4 TiB output allocation) "
                    "instead of throwing std::bad_alloc")
def test_enormous_activation_broadcast_is_a_clean_error() -> None:
    data = CASES["act-broadcast-to-2^40-outputs"]().SerializeToString()
    sess = ep.session(data)
    a = np.zeros((2**20, 1, 1, 8), np.float32)
    b = np.zeros((1, 2**20, 8, 1), np.float32)
    with pytest.raises(harness.ORT_ERRORS):
        sess.run(None, {"a": a, "b": b})


CORPUS = sorted((FUZZ / "corpus").glob("*.onnx"))


def test_fuzz_corpus_is_present() -> None:
    assert len(CORPUS) >= 10


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_fuzz_corpus_seed_is_claimed_and_matches(path: Path) -> None:
    """Every seed is a model the EP claims (so mutations start from the EP's patterns) and matches onnxruntime."""
    outcome = harness.check(path.read_bytes(), strict=True)
    assert outcome.label in {"ran", *RAN_VS_ONNX}, outcome
    assert {"MatMul", "Gemm", "BlockSparseExpand"} & set(outcome.claimed) or any(
        c.startswith("BlockSparseExpand") for c in outcome.claimed), outcome


FINDINGS = sorted((FUZZ / "regressions").glob("*.onnx"))


@pytest.mark.parametrize("path", FINDINGS, ids=[p.stem for p in FINDINGS])
def test_fuzz_regressions(path: Path) -> None:
    """Inputs the fuzzer once found a problem with (kept small in tools/fuzz/regressions/)."""
    harness.check(path.read_bytes(), strict=True)


def test_node_names_that_are_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Protobuf strings should be UTF-8, but nothing checks: a name that is not made assigned_nodes raise and
    `onnxq run` print a traceback (found by the fuzzer)."""
    from onnxq.apps.cli import main

    data = qdq_matmul_model(16, 8).SerializeToString()
    node_name = b"\x1a\x06matmul"  # NodeProto.name (field 3, 6 bytes) of the MatMul
    assert data.count(node_name) == 1
    bad = data.replace(node_name, b"\x1a\x06\x9c\xffmmul")  # same length: still a well-formed message
    sess = ep.session(bad)
    names = ep.assigned_nodes(sess)[EP]
    assert any("<not UTF-8>" in n for n in names), names
    path = tmp_path / "m.onnx"
    path.write_bytes(bad)
    rc = main(["run", str(path), "--runs", "0", "--dim", "*=2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.err


def test_io_dim_names_that_are_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A symbolic dim that is not UTF-8 opens a session, but onnxruntime's Python API raises UnicodeDecodeError
    when asked for the input's shape (found by the CI fuzzer: the harness crashed). The harness skips such a model;
    `onnxq run` says what is wrong in one line."""
    from onnxq.apps.cli import main

    data = qdq_matmul_model(16, 8).SerializeToString()
    dim = b"\x12\x05batch"  # Dimension.dim_param (field 2, 5 bytes)
    assert dim in data
    bad = data.replace(dim, b"\x12\x05bat\xe8h")  # same length: still a well-formed message
    outcome = harness.check(bad, strict=True)
    assert outcome.label == "skip:io-name-not-utf8", outcome
    assert {"MatMul", "Gemm"} & set(outcome.claimed), outcome  # the EP session itself opened and claimed the group
    path = tmp_path / "m.onnx"
    path.write_bytes(bad)
    rc = main(["run", str(path), "--runs", "0"])
    captured = capsys.readouterr()
    assert rc != 0
    assert "Traceback" not in captured.err and "UTF-8" in captured.err, captured.err


def test_models_that_crash_onnxruntime_itself_are_skipped_not_run() -> None:
    """Stock onnxruntime 1.32 segfaults creating a session for LayerNormalization(x, scale, "") (found by the
    fuzzer): the harness must recognise it before any session exists, or the fuzzing process dies."""
    data = (FUZZ / "ort_crashes" / "layernorm_empty_bias_input.onnx").read_bytes()
    assert harness.check(data, strict=True).label == "skip:crashes-onnxruntime"


def test_supervisor_tells_onnxruntime_crashes_from_ep_findings() -> None:
    """The fuzz supervisor replays a dead engine's input on stock onnxruntime alone, in a fresh process: a crash
    there is onnxruntime's (kept, fuzzing goes on); a seed that runs fine there would be the EP's finding."""
    import fuzz_ep

    assert fuzz_ep._onnxruntime_alone_crashes(FUZZ / "ort_crashes" / "layernorm_empty_bias_input.onnx")
    assert not fuzz_ep._onnxruntime_alone_crashes(FUZZ / "corpus" / "int8_mlp.onnx")
