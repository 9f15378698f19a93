"""The ISA ceiling: one cap on which kernels the EP and the kernel module may choose (ONNXQ_MAX_ISA for a process,
the EP's max_isa provider option for one session), reported by `onnxq --version` / `inspect`."""

from __future__ import annotations

import os

import numpy as np
import pytest

import onnxq.ep as ep
from onnxq import _kernels
from onnxq.apps.cli import main
from onnxq.apps.model_builders import fp8_qdq_matmul_model, qdq_matmul_model
from onnxq.cpu import ISA_ENV, ISA_LEVELS, cpu_info, isa_at_least


def test_levels_are_ordered_and_the_detected_level_is_one_of_them():
    assert tuple(_kernels.isa_levels()) == ISA_LEVELS
    assert _kernels.detected_isa_level() in ISA_LEVELS
    info = cpu_info()
    assert info["isa_level"] == info["detected_isa_level"] or ISA_ENV in os.environ


@pytest.mark.parametrize("level", ISA_LEVELS)
def test_ceiling_caps_features_and_kernel_lists(monkeypatch, level):
    top = _kernels.detected_isa_level()
    monkeypatch.setenv(ISA_ENV, level)
    want = ISA_LEVELS[min(ISA_LEVELS.index(level), ISA_LEVELS.index(top))]
    assert _kernels.isa_level() == want
    feats = _kernels.cpu_features().split()
    if want == "scalar":
        assert feats == [] and _kernels.qgemm_u8s8_kernels() == ["ref"] and _kernels.fp8_gemm_kernels() == ["ref"]
    if ISA_LEVELS.index(want) < ISA_LEVELS.index("avx512"):
        assert not any(f.startswith("avx512") for f in feats)
        assert "avx512vnni" not in _kernels.qgemm_u8s8_kernels()
    if want == "avx2":
        assert {"avx2", "fma", "f16c"} <= set(feats)
        assert _kernels.qgemm_u8s8_kernels()[0] == "avx2" and _kernels.fp8_gemm_kernels()[0] == "avx2"
    assert isa_at_least(want) and (want == "amx" or not isa_at_least(ISA_LEVELS[ISA_LEVELS.index(want) + 1]))


def test_invalid_environment_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(ISA_ENV, "avx9000")
    with pytest.raises(ValueError, match="ONNXQ_MAX_ISA=avx9000 is not an ISA level"):
        _kernels.isa_level()
    with pytest.raises(Exception, match="ONNXQ_MAX_ISA=avx9000 is not an ISA level"):
        ep.session(qdq_matmul_model(16, 8).SerializeToString())


def test_provider_option_caps_one_session():
    # at the scalar level the EP has no vector FP8 kernel and leaves FP8 to onnxruntime; other sessions keep theirs
    if not isa_at_least("avx2"):
        pytest.skip("this CPU has no vector FP8 kernel at any level")
    model = fp8_qdq_matmul_model(64, 32).SerializeToString()
    capped = ep.session(model, provider_options={"max_isa": "scalar"})
    free = ep.session(model)
    assert not ep.assigned_nodes(capped).get(ep.EP_NAME)
    assert any(n.startswith("MatMul") or n.startswith("Gemm") for n in ep.assigned_nodes(free).get(ep.EP_NAME, []))
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    a, b = capped.run(None, {"x": x})[0], free.run(None, {"x": x})[0]
    assert np.allclose(a, b, rtol=0.05, atol=0.05)  # onnxruntime's float route vs the EP's bf16 activations


def test_invalid_provider_option_is_a_clear_error():
    with pytest.raises(Exception, match="max_isa must be one of scalar\\|avx2"):
        ep.session(qdq_matmul_model(16, 8).SerializeToString(), provider_options={"max_isa": "fast"})


def test_version_and_inspect_show_the_level(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(ISA_ENV, "scalar")
    with pytest.raises(SystemExit):
        main(["--version"])
    out = capsys.readouterr().out
    assert "ISA level scalar" in out and "CPU " in out
    path = tmp_path / "m.onnx"
    path.write_bytes(qdq_matmul_model(16, 8).SerializeToString())
    assert main(["inspect", str(path)]) == 0
    assert "ISA level scalar" in capsys.readouterr().out
