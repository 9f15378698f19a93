"""The `onnxq` command line, in-process (onnxq.apps.cli.main) and as `python -m onnxq` subprocesses."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from onnxq.apps.cli import main
from onnxq.apps.model_builders import mlp_model
from onnxq.core.model_io import save_model

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
ENCODER_INT8 = SAMPLES / "tiny_encoder.int8.onnx"
MLP = SAMPLES / "mlp.onnx"
MLP_INT8 = SAMPLES / "mlp.int8.onnx"
CALIB_MLP = SAMPLES / "calib_mlp.npz"
EP_NAME = "OnnxqExecutionProvider"
CLAIMS_RE = re.compile(r"^onnxq EP\s+claims (\d+) of (\d+) nodes", re.MULTILINE)


def _cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onnxq", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _assert_one_error_line(stderr: str, *needles: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line on stderr, got:\n{stderr}"
    assert lines[0].startswith("onnxq: error: "), lines[0]
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    assert "Traceback" not in stderr
    return lines[0]


# --------------------------------------------------------------------------------------- version / help


def _check_version_text(out: str) -> None:
    lines = out.splitlines()
    assert lines[0].startswith("onnxq ")
    assert any(ln.startswith("onnxruntime ") and ort.__version__ in ln for ln in lines), out
    ep_lines = [ln for ln in lines if ln.startswith("EP library ")]
    assert len(ep_lines) == 1, out
    lib, sep, version = ep_lines[0].removeprefix("EP library ").rpartition(", version ")
    assert sep and Path(lib).is_file(), f"EP library path does not exist: {lib}"
    assert version == lines[0].removeprefix("onnxq "), out  # the library reports the package's version


def test_version_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["--version"])
    assert ei.value.code == 0
    _check_version_text(capsys.readouterr().out)


def test_version_subprocess(tmp_path: Path) -> None:
    r = _cli("--version", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _check_version_text(r.stdout)
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--help"], ["usage: onnxq", "--version", "inspect", "run"]),
        (["inspect", "--help"], ["usage: onnxq inspect", "model", "--json", "--no-ep"]),
        (["run", "--help"], ["usage: onnxq run", "model", "--inputs", "--dim", "--runs", "--threads", "--json"]),
    ],
)
def test_help(capsys: pytest.CaptureFixture[str], argv: list[str], needles: list[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 0
    out = capsys.readouterr().out
    for n in needles:
        assert n in out, f"{n!r} missing from {' '.join(argv)} output"


def test_help_subprocess(tmp_path: Path) -> None:
    r = _cli("run", "--help", cwd=tmp_path)
    assert r.returncode == 0
    assert "--inputs" in r.stdout and "--dim" in r.stdout
    assert r.stderr == ""


def test_no_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "usage: onnxq" in out
    assert "inspect" in out and "run" in out


def test_unknown_subcommand_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["frobnicate"])
    assert ei.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ inspect


def _int8_initializers(path: Path) -> tuple[int, int, int]:
    m = onnx.load(str(path))
    arrays = [numpy_helper.to_array(t) for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    return len(arrays), sum(a.size for a in arrays), sum(a.nbytes for a in arrays)


def test_inspect_int8_encoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digest = _sha256(ENCODER_INT8)
    out_json = tmp_path / "report.json"
    assert main(["inspect", str(ENCODER_INT8), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert _sha256(ENCODER_INT8) == digest

    model = onnx.load(str(ENCODER_INT8))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["MatMul"] > 0
    m = re.search(r"^ops\s+(\d+) nodes: (.*)$", out, re.MULTILINE)
    assert m, out
    assert int(m.group(1)) == len(model.graph.node)
    printed_ops = dict(
        (k, int(v)) for k, v in (item.rsplit(" ", 1) for item in m.group(2).split(", "))
    )
    assert printed_ops == dict(ops)

    n_int8, elems_int8, bytes_int8 = _int8_initializers(ENCODER_INT8)
    assert n_int8 > 0
    m = re.search(r"^\s+int8\s+(\d+) tensors\s+([\d,]+) values\s+(.+)$", out, re.MULTILINE)
    assert m, out
    assert int(m.group(1)) == n_int8
    assert int(m.group(2).replace(",", "")) == elems_int8

    m = CLAIMS_RE.search(out)
    assert m, out
    claimed, total = int(m.group(1)), int(m.group(2))
    assert 0 < claimed <= total

    report = json.loads(out_json.read_text())
    assert report["ep_error"] is None
    assert len(report["ep_claims"][EP_NAME]) == claimed
    assert sum(len(v) for v in report["ep_claims"].values()) == total
    assert report["initializers"]["INT8"]["bytes"] == bytes_int8
    assert report["initializers"]["INT8"]["count"] == n_int8
    assert report["op_counts"] == dict(ops)
    assert report["opsets"] == {"ai.onnx": model.opset_import[0].version}
    assert _listing(tmp_path) == ["report.json"]


def test_inspect_no_ep_fp32(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "r.json"
    assert main(["inspect", str(MLP), "--no-ep", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "MatMul 3" in out
    assert "float" in out
    report = json.loads(out_json.read_text())
    assert report["ep_claims"] == {}
    assert report["ep_error"] is None
    assert report["op_counts"] == {"Add": 3, "MatMul": 3, "Relu": 2}
    assert set(report["initializers"]) == {"FLOAT"}
    m = onnx.load(str(MLP))
    assert report["initializers"]["FLOAT"]["bytes"] == sum(
        numpy_helper.to_array(t).nbytes for t in m.graph.initializer
    )


def test_inspect_subprocess(tmp_path: Path) -> None:
    r = _cli("inspect", ENCODER_INT8, "--json", "rel.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = CLAIMS_RE.search(r.stdout)
    assert m and int(m.group(1)) > 0, r.stdout
    assert "Traceback" not in r.stderr
    assert json.loads((tmp_path / "rel.json").read_text())["ep_claims"][EP_NAME]


def test_inspect_json_into_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "missing" / "report.json"
    assert main(["inspect", str(MLP), "--no-ep", "--json", str(target)]) == 1
    err = capsys.readouterr().err
    _assert_one_error_line(err, str(target), "does not exist")
    assert _listing(tmp_path) == []


# ---------------------------------------------------------------------------------------------------- run


def test_run_int8_mlp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digest = _sha256(MLP_INT8)
    out_json = tmp_path / "run.json"
    rc = main(["run", str(MLP_INT8), "--dim", "batch=8", "--runs", "2", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0
    assert _sha256(MLP_INT8) == digest
    assert "logits" in out
    assert re.search(r"^claimed\s+onnxq EP [1-9]\d* / \d+ nodes", out, re.MULTILINE), out
    report = json.loads(out_json.read_text())
    assert report["output_max_abs_diff"]["logits"] < 1e-4
    assert report["output_max_abs"]["logits"] > 0
    assert report["ep_claims"][EP_NAME]
    assert report["runs"] == 2
    assert report["cpu_median_ms"] > 0 and report["onnxq_median_ms"] > 0
    assert report["notes"] == []
    assert _listing(tmp_path) == ["run.json"]


def test_run_with_npz_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "run.json"
    rc = main(["run", str(MLP_INT8), "--inputs", str(CALIB_MLP), "--runs", "0", "--json", str(out_json)])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(out_json.read_text())
    # the report's output magnitude is that of the model on exactly these inputs
    with np.load(CALIB_MLP) as data:
        feeds = {k: data[k] for k in data.files}
    sess = ort.InferenceSession(str(MLP_INT8), providers=["CPUExecutionProvider"])
    (ref,) = sess.run(["logits"], feeds)
    assert report["output_max_abs"]["logits"] == pytest.approx(float(np.max(np.abs(ref))), rel=1e-6)
    assert report["output_max_abs_diff"]["logits"] < 1e-4
    assert report["cpu_median_ms"] is None


@pytest.mark.parametrize("kind", ["text", "npy", "missing"])
def test_run_bad_inputs_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    bad = tmp_path / {"text": "inputs.txt", "npy": "inputs.npy", "missing": "nope.npz"}[kind]
    if kind == "text":
        bad.write_text("x = 1, 2, 3\n")
    elif kind == "npy":
        np.save(bad, np.zeros((2, 64), np.float32))
    before = _listing(tmp_path)
    rc = main(["run", str(MLP_INT8), "--inputs", str(bad), "--runs", "0"])
    err = capsys.readouterr().err
    assert rc == 1
    _assert_one_error_line(err, str(bad))
    assert _listing(tmp_path) == before


def test_run_npz_with_wrong_input_names(tmp_path: Path) -> None:
    bad = tmp_path / "wrong.npz"
    np.savez(bad, not_x=np.zeros((2, 64), np.float32))
    r = _cli("run", MLP_INT8, "--inputs", bad, "--runs", "0", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    _assert_one_error_line(r.stderr)


@pytest.mark.parametrize("dim", ["batch", "batch=", "batch=x", "=8x"])
def test_run_malformed_dim(capsys: pytest.CaptureFixture[str], dim: str) -> None:
    rc = main(["run", str(MLP_INT8), "--dim", dim, "--runs", "0"])
    err = capsys.readouterr().err
    assert rc == 1
    _assert_one_error_line(err, "--dim expects NAME=INT", f"'{dim}'")


def test_run_missing_external_data(tmp_path: Path) -> None:
    model = tmp_path / "ext.onnx"
    save_model(mlp_model(), model, external_data=True)
    (tmp_path / "ext.onnx.data").unlink()
    digest = _sha256(model)
    r = _cli("run", model, "--runs", "0", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    _assert_one_error_line(r.stderr, str(model))
    assert _sha256(model) == digest


# ------------------------------------------------------------------------------- bad model files, both commands

BAD_MODELS = {
    "not_onnx": ("garbage.onnx", b"This is a text file, not an ONNX model.\n"),
    "not_onnx_json": ("model.json", b'{"hello": "world"}\n'),
    "missing": ("missing.onnx", None),
}


def _make_bad(tmp_path: Path, kind: str) -> tuple[Path, str | None]:
    name, content = BAD_MODELS[kind]
    p = tmp_path / name
    if content is None:
        return p, None
    p.write_bytes(content)
    return p, _sha256(p)


def _extra_args(command: str) -> list[str]:
    return ["--runs", "0"] if command == "run" else ["--no-ep"]


@pytest.mark.parametrize("kind", list(BAD_MODELS))
@pytest.mark.parametrize("command", ["inspect", "run"])
def test_bad_model_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, kind: str
) -> None:
    p, digest = _make_bad(tmp_path, kind)
    out_json = tmp_path / "out.json"
    before = _listing(tmp_path)
    rc = main([command, str(p), *_extra_args(command), "--json", str(out_json)])
    err = capsys.readouterr().err
    assert rc == 1
    _assert_one_error_line(err, str(p))
    if digest is None:
        assert not p.exists()
    else:
        assert _sha256(p) == digest
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("kind", list(BAD_MODELS))
@pytest.mark.parametrize("command", ["inspect", "run"])
def test_bad_model_subprocess(tmp_path: Path, command: str, kind: str) -> None:
    p, digest = _make_bad(tmp_path, kind)
    before = _listing(tmp_path)
    r = _cli(command, p, *_extra_args(command), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    _assert_one_error_line(r.stderr, str(p))
    if digest is None:
        assert not p.exists()
    else:
        assert _sha256(p) == digest
    assert _listing(tmp_path) == before
