"""Hardening, part 1: the bad-input matrix for `onnxq quantize` (CLI and Python API) and the other commands that
read models.

Every case must give (a) one actionable line, `onnxq: error: ...` on stderr with no traceback (CLI) or an
``OnnxqError`` whose message is one line (API), (b) a nonzero exit, (c) no output file and no temporary left in
any directory involved, and (d) every input file (model, external data, calibration data) byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _qmodels import float_feeds, matmul_chain
from onnx import TensorProto, numpy_helper

import onnxq
from onnxq.apps.cli import main
from onnxq.core.errors import OnnxqError
from onnxq.core.model_io import save_model


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under root (temporaries and hidden files included) with its content hash."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
    return out


def _copy(m: onnx.ModelProto) -> onnx.ModelProto:
    c = onnx.ModelProto()
    c.CopyFrom(m)
    return c


def _feeds(n: int = 2) -> list[dict[str, np.ndarray]]:
    return float_feeds(matmul_chain(), n, b=2, s=3)


def _write_calib(d: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    c = d / "calib"
    c.mkdir()
    for i, f in enumerate(feeds):
        np.savez(c / f"{i}.npz", **f)
    return c


@dataclass
class Case:
    """A bad input: `build(dir)` writes the files and returns (model path, output path, calibration data or None)."""

    build: Callable[[Path], tuple[Path, Path, Path | None]]
    message: str  # a substring of the one-line error
    extra: list[str] = field(default_factory=list)  # more CLI options


def _good_model(d: Path, model: onnx.ModelProto | None = None, **save_kw: object) -> Path:
    p = d / "m.onnx"
    save_model(model if model is not None else matmul_chain(), p, **save_kw)  # type: ignore[arg-type]
    return p


def _with_calib(make_model: Callable[[Path], Path], feeds: Callable[[], list] = _feeds):  # type: ignore[type-arg]
    def build(d: Path) -> tuple[Path, Path, Path | None]:
        return make_model(d), d / "out" / "q.onnx", _write_calib(d, feeds())

    return build


def _weight_only(make_model: Callable[[Path], Path], out: Callable[[Path], Path] | None = None):  # type: ignore[no-untyped-def]
    def build(d: Path) -> tuple[Path, Path, Path | None]:
        return make_model(d), (out(d) if out else d / "out" / "q.onnx"), None

    return build


# ------------------------------------------------------------------------------------------- the models


def text_file(d: Path) -> Path:
    p = d / "m.onnx"
    p.write_text("name,value\nnot,an onnx model\n")
    return p


def random_bytes(d: Path) -> Path:
    p = d / "m.onnx"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return p


def empty_file(d: Path) -> Path:
    p = d / "m.onnx"
    p.write_bytes(b"")
    return p


def truncated(d: Path) -> Path:
    p = _good_model(d)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    return p


def external_data_missing(d: Path) -> Path:
    p = _good_model(d, external_data=True)
    os.unlink(d / "m.onnx.data")
    return p


def external_data_truncated(d: Path) -> Path:
    p = _good_model(d, external_data=True)
    data = (d / "m.onnx.data").read_bytes()
    (d / "m.onnx.data").write_bytes(data[:100])
    return p


def external_data_outside(d: Path) -> Path:
    m = _copy(matmul_chain())
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="../../../../etc/passwd")
    p = d / "m.onnx"
    onnx.save(m, p)
    return p


def _opset(version: int, ir: int | None = None) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        m = _copy(matmul_chain())
        m.opset_import[0].version = version
        if ir is not None:
            m.ir_version = ir
        p = d / "m.onnx"
        onnx.save(m, p)
        return p

    return make


def no_default_opset(d: Path) -> Path:
    m = _copy(matmul_chain())
    del m.opset_import[:]
    p = d / "m.onnx"
    onnx.save(m, p)
    return p


def nonfinite_weights(d: Path) -> Path:
    m = _copy(matmul_chain())
    for t, bad in zip([m.graph.initializer[0], m.graph.initializer[2]], [np.nan, np.inf], strict=True):
        a = numpy_helper.to_array(t).copy()
        a[1, 2] = bad
        t.CopyFrom(numpy_helper.from_array(a, t.name))
    return _good_model(d, m)


def _bad_feed(edit: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> Callable[[], list]:  # type: ignore[type-arg]
    def feeds() -> list[dict[str, np.ndarray]]:
        f = _feeds(2)
        f[1] = edit(dict(f[1]))
        return f

    return feeds


def _nan_feed(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    x = f["x"].copy()
    x[0, 1, 2] = np.nan
    return {"x": x}


def _inf_feed(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    x = f["x"].copy()
    x[1, 0, 0] = -np.inf
    return {"x": x}


def _empty_calib_dir(d: Path) -> tuple[Path, Path, Path | None]:
    (d / "calib").mkdir()
    return _good_model(d), d / "out" / "q.onnx", d / "calib"


def _readonly_fs_output(d: Path) -> Path:
    return Path("/sys/onnxq-hardening-test.onnx")


CASES: dict[str, Case] = {
    "not-onnx-text": Case(_weight_only(text_file), "not a valid ONNX model"),
    "not-onnx-random-bytes": Case(_weight_only(random_bytes), "not a valid ONNX model"),
    "not-onnx-empty-file": Case(_weight_only(empty_file), "empty file"),
    "truncated-protobuf": Case(_weight_only(truncated), "not a valid ONNX model"),
    "external-data-missing": Case(_weight_only(external_data_missing), "external data could not be read"),
    "external-data-truncated": Case(_weight_only(external_data_truncated), "external data could not be read"),
    "external-data-outside-model-dir": Case(_weight_only(external_data_outside), "points outside the directory"),
    "opset-very-old": Case(_with_calib(_opset(1)), "could not convert the model from opset 1"),
    "opset-unknown-future": Case(_weight_only(_opset(99)), "opset 99 is newer than"),
    "ir-version-unknown-future": Case(_weight_only(_opset(21, ir=99)), "IR version 99 is newer than"),
    "no-default-opset": Case(_weight_only(no_default_opset), "imports no default-domain"),
    "nonfinite-weights": Case(_weight_only(nonfinite_weights), "weight holds NaN or infinity"),
    "calibration-nan": Case(_with_calib(_good_model, _bad_feed(_nan_feed)), "NaN/infinite"),
    "calibration-inf": Case(_with_calib(_good_model, _bad_feed(_inf_feed)), "NaN/infinite"),
    "calibration-zero-size-dim": Case(
        _with_calib(_good_model, _bad_feed(lambda f: {"x": np.zeros((0, 3, 32), np.float32)})), "is empty"),
    "calibration-empty-dir": Case(_empty_calib_dir, "holds no .npz files"),
    "calibration-npz-without-arrays": Case(_with_calib(_good_model, lambda: [{}]), "missing input(s) ['x']"),
    "calibration-wrong-name": Case(_with_calib(_good_model, _bad_feed(lambda f: {"input": f["x"]})),
                                   "missing input(s) ['x']"),
    "calibration-extra-name": Case(_with_calib(_good_model, _bad_feed(lambda f: {**f, "mask": f["x"]})),
                                   "unknown input name(s) ['mask']"),
    "calibration-wrong-dtype": Case(_with_calib(_good_model, _bad_feed(lambda f: {"x": f["x"].astype(np.float64)})),
                                    "is float64, the model wants float32"),
    "calibration-wrong-rank": Case(_with_calib(_good_model, _bad_feed(lambda f: {"x": f["x"][0]})),
                                   "has 2 dims"),
    "calibration-wrong-dim": Case(_with_calib(_good_model, _bad_feed(lambda f: {"x": f["x"][..., :7]})),
                                  "dim 2 is 7, the model wants 32"),
    "output-directory-missing": Case(_weight_only(_good_model, lambda d: d / "nowhere" / "q.onnx"),
                                     "does not exist"),
    "output-is-a-directory": Case(_weight_only(_good_model, lambda d: d), "is a directory"),
    "output-under-a-file": Case(_weight_only(_good_model, lambda d: d / "m.onnx" / "q.onnx"), "does not exist"),
    "output-is-the-input": Case(_weight_only(_good_model, lambda d: d / "m.onnx"), "is the input model"),
    "output-report-directory-missing": Case(_weight_only(_good_model), "does not exist",
                                            extra=["--report", "nowhere/report.json"]),
}
WEIGHT_ONLY = ["--recipe", "fp8-e4m3-weight-only"]


def _prepare(tmp_path: Path, case: Case) -> tuple[Path, Path, Path | None, dict[str, str]]:
    d = tmp_path / "work"
    d.mkdir()
    (d / "out").mkdir()
    model, out, calib = case.build(d)
    return model, out, calib, _snapshot(d)


def _argv(model: Path, out: Path, calib: Path | None, case: Case) -> list[str]:
    argv = ["quantize", str(model), "-o", str(out), "--no-progress", *case.extra]
    return argv + (["--data", str(calib)] if calib is not None else WEIGHT_ONLY)


@pytest.mark.parametrize("name", list(CASES))
def test_cli_quantize_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch, name: str) -> None:
    case = CASES[name]
    model, out, calib, before = _prepare(tmp_path, case)
    monkeypatch.chdir(tmp_path / "work")
    rc = main(_argv(model, out, calib, case))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 1, captured
    assert len(lines) == 1 and lines[0].startswith("onnxq: error: "), captured.err
    assert case.message in lines[0], lines[0]
    assert "Traceback" not in captured.err
    assert _snapshot(tmp_path / "work") == before, "an input changed or a file was left behind"


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if not c.extra])
def test_api_quantize_bad_input(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    model, out, calib, before = _prepare(tmp_path, case)
    cfg = onnxq.QuantConfig.from_recipe("fp8-e4m3" if calib is not None else "fp8-e4m3-weight-only")
    with pytest.raises(OnnxqError) as ei:
        onnxq.quantize(model, out, cfg, str(calib) if calib is not None else None)
    msg = str(ei.value)
    assert "\n" not in msg and case.message in msg, msg
    assert _snapshot(tmp_path / "work") == before, "an input changed or a file was left behind"


def test_api_empty_and_mismatched_feed_iterables() -> None:
    """In-memory calibration data: nothing, not dicts, or differently named / typed arrays."""
    cfg = onnxq.QuantConfig.from_recipe("int8")
    m = matmul_chain()
    good = _feeds(1)[0]
    for data, message in [([], "calibration data is empty"), ([good["x"]], "expected a dict"),
                          ([{"x": good["x"].astype(np.int32)}], "is int32, the model wants float32"),
                          (iter([]), "calibration data is empty"), (42, "must be a path")]:
        with pytest.raises(OnnxqError, match=None) as ei:
            onnxq.quantize(m, None, cfg, data)  # type: ignore[arg-type]
        assert message in str(ei.value) and "\n" not in str(ei.value)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


@pytest.mark.parametrize("external", [False, True])
def test_cli_disk_full_leaves_nothing(tmp_path: Path, external: bool) -> None:
    """A write that fails midway (here: a file-size limit, as a full disk would) is one line and leaves nothing."""
    d = tmp_path / "work"
    d.mkdir()
    model = _good_model(d)
    before = _snapshot(d)
    argv = [sys.executable, "-m", "onnxq", "quantize", str(model), "-o", str(d / "q.onnx"), "--no-progress",
            *WEIGHT_ONLY, *(["--external-data"] if external else [])]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=d, timeout=300, preexec_fn=_limit_file_size)
    assert r.returncode == 1, r
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("onnxq: error: "), r.stderr
    assert "nothing was written" in r.stderr
    assert _snapshot(d) == before


def test_cli_read_only_file_system(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """/sys is read-only even for root (tests may run as root, where chmod 0555 stops nothing)."""
    if os.access("/sys", os.W_OK) and not Path("/sys/kernel").is_dir():
        pytest.skip("no read-only /sys here")
    d = tmp_path / "work"
    d.mkdir()
    model = _good_model(d)
    before = _snapshot(d)
    rc = main(["quantize", str(model), "-o", "/sys/onnxq-hardening-test.onnx", "--no-progress", *WEIGHT_ONLY])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("onnxq: error: /sys/onnxq-hardening-test.onnx: "), err
    assert not Path("/sys/onnxq-hardening-test.onnx").exists()
    assert _snapshot(d) == before


def test_cli_subprocess_one_line_no_traceback(tmp_path: Path) -> None:
    """The same contract through a real process (exit status, stderr) for a few representative cases."""
    for name in ("truncated-protobuf", "external-data-missing", "calibration-wrong-dtype", "output-under-a-file"):
        case = CASES[name]
        sub = tmp_path / name
        sub.mkdir()
        model, out, calib, before = _prepare(sub, case)
        r = subprocess.run([sys.executable, "-m", "onnxq", *_argv(model, out, calib, case)], capture_output=True,
                           text=True, cwd=sub / "work", timeout=300)
        assert r.returncode == 1, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("onnxq: error: ") and case.message in lines[0], (name, r.stderr)
        assert _snapshot(sub / "work") == before, name


# ------------------------------------------------------------------- the other commands that read a model


@pytest.mark.parametrize("name", ["not-onnx-text", "truncated-protobuf", "external-data-missing",
                                  "opset-unknown-future"])
@pytest.mark.parametrize("command", ["run", "compare"])
def test_run_and_compare_bad_model(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                                   command: str) -> None:
    case = CASES[name]
    d = tmp_path / "work"
    d.mkdir()
    model, *_ = case.build(d)
    calib = _write_calib(d, _feeds(1))
    good = d / "good.onnx"
    save_model(matmul_chain(), good)
    before = _snapshot(d)
    if command == "run":
        argv = ["run", str(model), "--runs", "0", "--dim", "*=2"]
    else:
        argv = ["compare", str(good), str(model), "--data", str(calib), "--no-progress"]
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("onnxq: error: "), err
    assert _snapshot(d) == before


# ----------------------------------------------------------------- dynamic and zero-size dims that are fine


def test_dynamic_dims_and_feeds_of_different_shapes_quantize(tmp_path: Path) -> None:
    """Symbolic batch / sequence dims calibrated on feeds of different shapes (a stock quantizer crashes here)."""
    m = matmul_chain()
    feeds = float_feeds(m, 1, b=1, s=2) + float_feeds(m, 1, b=3, s=7, seed=5) + float_feeds(m, 1, b=2, s=1, seed=6)
    out = tmp_path / "q.onnx"
    report = onnxq.quantize(m, out, onnxq.QuantConfig.from_recipe("int8"), feeds)
    assert report.calibration_samples == 3
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for b, s in [(1, 1), (4, 9)]:
        x = np.random.default_rng(b).standard_normal((b, s, 32)).astype(np.float32)
        assert sess.run(None, {"x": x})[0].shape == (b, s, 32)


def test_zero_size_weights_stay_float(tmp_path: Path) -> None:
    """Layers with an empty weight ([32, 0], [0, 32]) are left in float, with the reason: onnxruntime 1.32's fused
    Q/DQ MatMul returns uninitialized memory for K = 0 (the float model gives zeros)."""
    m = _copy(matmul_chain())
    inits = m.graph.initializer
    inits[0].CopyFrom(numpy_helper.from_array(np.zeros((32, 0), np.float32), "W1"))
    inits[1].CopyFrom(numpy_helper.from_array(np.zeros((0,), np.float32), "b1"))
    inits[2].CopyFrom(numpy_helper.from_array(np.zeros((0, 32), np.float32), "W2"))
    out = tmp_path / "q.onnx"
    with pytest.raises(OnnxqError, match=r"nothing to quantize.*weight is empty"):
        onnxq.quantize(m, out, onnxq.QuantConfig.from_recipe("int8"), _feeds(2))
    m.graph.initializer.append(numpy_helper.from_array(np.ones((32, 32), np.float32), "W3"))
    m.graph.node.append(onnx.helper.make_node("MatMul", ["y", "W3"], ["z"], name="mm3"))
    m.graph.output[0].name = "z"
    report = onnxq.quantize(m, out, onnxq.QuantConfig.from_recipe("int8"), _feeds(2))
    assert report.skipped["mm1"].startswith("weight is empty") and report.layers_quantized == 1
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": np.ones((2, 3, 32), np.float32)})[0]
    assert y.shape == (2, 3, 32) and not y.any()
