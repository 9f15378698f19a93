"""The EP's behaviour options as provider options: ``layer_norm`` (on|off) and ``sparse`` (auto|always|never).

They change what is claimed and which kernel runs, never the result beyond each kernel's documented bound (INT8:
bit for bit). The environment variables ONNXQ_LAYERNORM / ONNXQ_SPARSE remain test and benchmark overrides that
stand in for an option the session leaves unset; an option the session sets wins over them.
"""

from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import onnxq
import onnxq.ep as ep
from onnxq.apps.model_builders import (
    fp8_qdq_matmul_model,
    int8_qdq_static,
    qdq_matmul_model,
    sample_inputs,
    tiny_encoder_model,
)
from onnxq.cpu import isa_at_least

EP = ep.EP_NAME
pytestmark = pytest.mark.every_isa


@pytest.fixture(autouse=True)
def _no_outer_overrides(monkeypatch):
    # what a test expects by default must not depend on the caller's environment
    for name in ("ONNXQ_LAYERNORM", "ONNXQ_SPARSE", "ONNXQ_FP8_KERNEL", "ONNXQ_QGEMM_KERNEL"):
        monkeypatch.delenv(name, raising=False)


def _claimed(sess: ort.InferenceSession) -> list[str]:
    return sorted(ep.assigned_nodes(sess).get(EP, []))


def _session_and_kernels(data: bytes, capfd, provider_options=None):
    """An EP session and the kernel each compiled group chose (from the EP's verbose log)."""
    so = ort.SessionOptions()
    so.log_severity_level = 0
    capfd.readouterr()
    sess = ep.session(data, so, provider_options)
    return sess, re.findall(r"with kernel (\S+)", capfd.readouterr().err)


# ------------------------------------------------------------------------------------------------ layer_norm
@pytest.fixture(scope="module")
def int8_encoder() -> bytes:
    m = tiny_encoder_model(d=64, ffn=256)
    return int8_qdq_static(m, [sample_inputs(m, batch=2, seq=16, seed=i) for i in range(3)]).SerializeToString()


def test_layer_norm_off_stops_only_the_layer_norm_claim(int8_encoder):
    on = _claimed(ep.session(int8_encoder))
    off = _claimed(ep.session(int8_encoder, provider_options={"layer_norm": "off"}))
    assert sum(n.startswith("LayerNormalization:") for n in on) == 2, on
    assert not any(n.startswith("LayerNormalization:") for n in off), off
    # the MatMul groups are claimed as before; only the LayerNorms (and any Adds folded into them) go back
    assert set(off) < set(on)
    assert {n.split(":")[0] for n in set(on) - set(off)} <= {"LayerNormalization", "Add"}
    assert _claimed(ep.session(int8_encoder, provider_options={"layer_norm": "on"})) == on


def test_layer_norm_option_wins_over_the_environment(int8_encoder, monkeypatch):
    on = _claimed(ep.session(int8_encoder))
    monkeypatch.setenv("ONNXQ_LAYERNORM", "never")  # stands in for the unset option ...
    off = _claimed(ep.session(int8_encoder))
    assert not any(n.startswith("LayerNormalization:") for n in off)
    # ... but not for one the session sets
    assert _claimed(ep.session(int8_encoder, provider_options={"layer_norm": "on"})) == on


# ------------------------------------------------------------------------------------------------ sparse
K, N = 256, 97


def _sparse_int8() -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """A 90% 4x1 block-sparse INT8 MatMul taking u8 activations, and what its exact integer result needs."""
    base = qdq_matmul_model(K, N, seed=5, include_quantize=False)
    cfg = dict(sparsity=0.9, min_elements=0)
    packed = onnxq.sparsify(base, None, onnxq.SparsifyConfig(**cfg))
    assert len(packed.pack.packed) == 1
    pruned = onnxq.sparsify(base, None, onnxq.SparsifyConfig(**cfg, pack=False)).model
    inits = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
    return (packed.model.SerializeToString(), inits["w"], inits["w_scale"], inits["b"], int(inits["x_zp"]),
            inits["x_scale"])


def _int8_reference(x: np.ndarray, w, w_scale, b, x_zp, x_scale) -> np.ndarray:
    """The EP's INT8 contract: exact integer sum, times float(a_scale * w_scale[n]), plus the bias, in float32."""
    s = (x.astype(np.int64) - x_zp) @ w.astype(np.int64)
    scale = (np.float32(x_scale) * w_scale.astype(np.float32)).astype(np.float32)
    return scale * s.astype(np.float32) + b.astype(np.float32)


def _expected_int8_sparse_kernel() -> str | None:
    if isa_at_least("avx512vnni"):
        return "sparse4x1-avx512vnni"
    return "sparse4x1-avx2" if isa_at_least("avx2") else None


def test_sparse_option_picks_the_int8_kernel_and_results_stay_exact(capfd):
    data, *ref_args = _sparse_int8()
    want_sparse = _expected_int8_sparse_kernel()
    always, k_always = _session_and_kernels(data, capfd, {"sparse": "always"})
    never, k_never = _session_and_kernels(data, capfd, {"sparse": "never"})
    assert len(k_always) == 1 and len(k_never) == 1
    assert not k_never[0].startswith("sparse"), k_never
    # `always` takes the sparse kernel wherever one exists under the ceiling (scalar: none, the dense reference runs)
    if want_sparse:
        assert k_always == [want_sparse]
    else:
        assert not k_always[0].startswith("sparse"), k_always
    rng = np.random.default_rng(3)
    for m in (1, 3, 70):
        x = rng.integers(0, 256, (m, K), dtype=np.uint8)
        want = _int8_reference(x, *ref_args)
        np.testing.assert_array_equal(always.run(None, {"x_q": x})[0], want, err_msg=f"always m={m}")
        np.testing.assert_array_equal(never.run(None, {"x_q": x})[0], want, err_msg=f"never m={m}")


def test_sparse_option_wins_over_the_environment(capfd, monkeypatch):
    data = _sparse_int8()[0]
    want_sparse = _expected_int8_sparse_kernel()
    if want_sparse is None:
        pytest.skip("no sparse INT8 kernel under this ceiling")
    monkeypatch.setenv("ONNXQ_SPARSE", "never")  # stands in for the unset option ...
    assert not _session_and_kernels(data, capfd)[1][0].startswith("sparse")
    assert _session_and_kernels(data, capfd, {"sparse": "always"})[1] == [want_sparse]  # ... not for a set one
    monkeypatch.setenv("ONNXQ_SPARSE", "always")
    assert _session_and_kernels(data, capfd)[1] == [want_sparse]
    assert not _session_and_kernels(data, capfd, {"sparse": "never"})[1][0].startswith("sparse")


def test_sparse_option_picks_the_fp8_kernel_within_the_fp32_bound(capfd, fp8_kernel_everywhere):
    base = fp8_qdq_matmul_model(K, N, seed=2, activation_format=None, bias=False)
    r = onnxq.sparsify(base, None, onnxq.SparsifyConfig(sparsity=0.9, min_elements=0))
    assert len(r.pack.packed) == 1
    data = r.model.SerializeToString()
    pruned = onnxq.sparsify(base, None, onnxq.SparsifyConfig(sparsity=0.9, min_elements=0, pack=False)).model
    w_init = next(t for t in pruned.graph.initializer if t.name == "w")
    w = np.frombuffer(w_init.raw_data, ml_dtypes.float8_e4m3fn).reshape(K, N).astype(np.float64)
    scale = numpy_helper.to_array(next(t for t in pruned.graph.initializer if t.name == "w_scale"))
    wdq = w * scale.astype(np.float64)
    always, k_always = _session_and_kernels(data, capfd, {"sparse": "always"})
    never, k_never = _session_and_kernels(data, capfd, {"sparse": "never"})
    assert len(k_always) == 1 and len(k_never) == 1 and not k_never[0].startswith("sparse"), (k_always, k_never)
    want_sparse = ("sparse4x1-fp8-avx512bf16" if isa_at_least("avx512bf16") else
                   "sparse4x1-fp8-avx2" if isa_at_least("avx2") else None)
    if want_sparse:
        assert k_always == [want_sparse]
    else:
        assert not k_always[0].startswith("sparse"), k_always
    rng = np.random.default_rng(4)
    for m in (1, 5, 70):
        x = rng.standard_normal((m, K)).astype(np.float32)
        xa = x.astype(ml_dtypes.bfloat16).astype(np.float64)  # weight-only FP8: activations rounded to bf16
        bound = (K + 4) * 2.0**-24 * (np.abs(xa) @ np.abs(wdq)) + 1e-7
        for name, sess in (("always", always), ("never", never)):
            err = np.abs(sess.run(None, {"x": x})[0] - xa @ wdq)
            assert np.all(err <= bound), f"{name} m={m}: worst {(err / bound).max():.3g}"


# ------------------------------------------------------------------------------------------------ bad values
@pytest.mark.parametrize(("options", "message"), [
    ({"layer_norm": "maybe"}, "layer_norm must be one of on\\|off, got 'maybe'"),
    ({"sparse": "sometimes"}, "sparse must be one of auto\\|always\\|never, got 'sometimes'"),
    ({"max_isa": "fast"}, "max_isa must be one of scalar\\|avx2"),
    ({"num_threads": "-1"}, "num_threads must be an integer in \\[0, 1024\\], got '-1'"),
])
def test_bad_option_values_fail_session_creation(options, message):
    with pytest.raises(Exception, match=message):
        ep.session(qdq_matmul_model(16, 8).SerializeToString(), provider_options=options)


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("ONNXQ_LAYERNORM", "sometimes", "ONNXQ_LAYERNORM=sometimes is not one of on\\|off\\|never"),
    ("ONNXQ_SPARSE", "maybe", "ONNXQ_SPARSE=maybe is not one of auto\\|always\\|never"),
])
def test_bad_override_values_fail_session_creation(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(Exception, match=message):
        ep.session(qdq_matmul_model(16, 8).SerializeToString())


def test_unknown_option_keys_are_ignored():
    sess = ep.session(qdq_matmul_model(16, 8).SerializeToString(), provider_options={"no_such_option": "x"})
    assert _claimed(sess) == _claimed(ep.session(qdq_matmul_model(16, 8).SerializeToString()))
    assert _claimed(sess)
