"""Shipping: ONNX Runtime's plugin-EP package conventions, one version everywhere, provenance in written models,
a clear error for an onnxruntime too old, and the EP used from C++ (examples/cpp) with the same results as from
Python."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxq
import onnxq.ep as ep
from onnxq.core.config import QuantConfig, SparsifyConfig
from onnxq.core.errors import OnnxqError
from onnxq.plugin import check_onnxruntime_version

ROOT = Path(__file__).resolve().parent.parent


def test_plugin_conventions_without_importing_onnxruntime():
    code = ("import sys, onnxq; p = onnxq.get_library_path(); n = onnxq.get_ep_names(); "
            "print(p); print(n[0]); print('onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.split()
    assert Path(out[0]).is_file() and out[0] == ep.library_path()
    assert out[1] == ep.EP_NAME and out[2] == "False"
    assert [d.ep_name for d in ep.ep_devices()] == onnxq.get_ep_names()


def test_one_version_everywhere():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert onnxq.__version__ == project
    meta = ep.ep_devices()[0].ep_metadata
    assert meta["onnxq_version"] == project


def test_cli_version_names_the_ep_library_version():
    out = subprocess.run([sys.executable, "-P", "-m", "onnxq", "--version"], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert f"onnxq {onnxq.__version__}\n" in out
    assert re.search(r"EP library \S+libonnxq_ep\.so, version " + re.escape(onnxq.__version__) + "\n", out), out


def test_written_models_say_which_onnxq_wrote_them(tmp_path):
    from onnxq.apps.model_builders import mlp_model, sample_inputs

    m = mlp_model(sizes=(64, 128, 96, 16))
    m.producer_name, m.producer_version = "exporter", "9.9"
    q = onnxq.quantize(m, None, QuantConfig.from_recipe("int8"), [sample_inputs(m, batch=4)]).model
    meta = {p.key: p.value for p in q.metadata_props}
    assert (q.producer_name, q.producer_version) == ("onnxq", onnxq.__version__)
    assert meta["onnxq.version"] == onnxq.__version__ and meta["onnxq.source_producer"] == "exporter 9.9"
    assert meta["onnxq.format"] == "int8"
    s = onnxq.sparsify(m, None, SparsifyConfig(sparsity=0.5, min_elements=0)).model
    smeta = {p.key: p.value for p in s.metadata_props}
    assert s.producer_name == "onnxq" and smeta["onnxq.sparsify"].startswith("sparsity 0.5, block 4x1")
    assert m.producer_name == "exporter"  # the input is never modified


@pytest.mark.parametrize("version,ok", [("1.28.0", False), ("1.22.1", False), ("1.29.0", True), ("1.32.0", True),
                                        ("1.33.0.dev20270101", True), ("2.0.0", True)])
def test_onnxruntime_version_gate(version, ok):
    if ok:
        check_onnxruntime_version(version)
    else:
        with pytest.raises(OnnxqError, match=r"needs onnxruntime >= 1\.29 .*has onnxruntime " + re.escape(version)):
            check_onnxruntime_version(version)


# ------------------------------------------------------------------------------------------------ C++ example


@pytest.fixture(scope="module")
def cpp_example(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cpp")
    r = subprocess.run(["bash", str(ROOT / "examples" / "cpp" / "build.sh"), str(out)], capture_output=True,
                       text=True, env=dict(os.environ, PYTHON=sys.executable))
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip().splitlines()[-1])


def _feed(sess: ort.InferenceSession, dims: dict[str, int]) -> dict[str, np.ndarray]:
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else dims.get(d, 1) for d in inp.shape]
    k = np.arange(int(np.prod(shape)), dtype=np.float64)
    return {inp.name: (np.sin(0.37 * k) * 2.0).astype(np.float32).reshape(shape)}


def _cpp_run(exe: Path, model: Path, dims: dict[str, int], out: Path, *options: str) -> subprocess.CompletedProcess:
    args = [str(exe), ep.library_path(), str(model), "--out", str(out)]
    for k, v in dims.items():
        args += ["--dim", f"{k}={v}"]
    for o in options:
        args += ["--option", o]
    return subprocess.run(args, capture_output=True, text=True)


@pytest.mark.parametrize("kind", ["int8", "fp8"])
def test_cpp_example_runs_int8_and_fp8_models_like_python(cpp_example, tmp_path, kind):
    if kind == "int8":
        model, dims = ROOT / "sample_models" / "mlp.int8.onnx", {"batch": 3}
    else:
        model, dims = tmp_path / "enc.fp8.onnx", {"batch": 2, "seq": 16}
        onnxq.quantize(ROOT / "sample_models" / "tiny_encoder.onnx", model, QuantConfig.from_recipe("fp8-e4m3"),
                       ROOT / "sample_models" / "calib_tiny_encoder.npz")
    # the same ISA level on both sides: FP8 results depend on the kernel (bf16 vs fp32 compute), and the child
    # process may see a different CPU than this one (under valgrind it runs natively)
    from onnxq.cpu import isa_level

    r = _cpp_run(cpp_example, model, dims, tmp_path / "out.bin", "num_threads=1", f"max_isa={isa_level()}")
    assert r.returncode == 0, r.stderr
    assert f"ep {ep.EP_NAME} vendor onnxq version {onnxq.__version__}" in r.stdout
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ep.session(str(model), so, {"num_threads": "1"})
    claimed = ep.assigned_nodes(sess).get(ep.EP_NAME, [])
    assert claimed, "the EP claimed nothing: the comparison would not exercise it"
    want = np.concatenate([o.ravel() for o in sess.run(None, _feed(sess, dims))])
    got = np.fromfile(tmp_path / "out.bin", dtype=np.float32)
    np.testing.assert_array_equal(got, want)


def test_cpp_example_reports_a_bad_option(cpp_example, tmp_path):
    r = _cpp_run(cpp_example, ROOT / "sample_models" / "mlp.int8.onnx", {}, tmp_path / "o.bin", "sparse=bogus")
    assert r.returncode == 2
    assert "sparse must be one of auto|always|never, got 'bogus'" in r.stderr
    onnx.checker.check_model(str(ROOT / "sample_models" / "mlp.int8.onnx"))  # the model itself is fine
