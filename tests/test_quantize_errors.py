"""Bad input gives one clear error and loses nothing: not a model, truncated file, NaN / Inf / empty calibration
data, missing or unknown input names, wrong dtype / rank / shape, output over the input, nothing to quantize,
no data for a recipe that needs it; the CLI prints one line and exits 1. No temporary files anywhere."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _qmodels import float_feeds, matmul_chain

import onnxq
from onnxq.apps.cli import main
from onnxq.core.errors import ModelLoadError, OnnxqError
from onnxq.core.model_io import save_model


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    p = tmp_path / "m.onnx"
    save_model(matmul_chain(), p)
    return p


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _q(src, feeds, out=None, **kw):  # type: ignore[no-untyped-def]
    return onnxq.quantize(src, out, onnxq.QuantConfig.from_recipe("fp8-e4m3", **kw), feeds)


def test_not_a_model_and_truncated(tmp_path: Path, model_file: Path):
    txt = tmp_path / "notes.onnx"
    txt.write_text("hello, not protobuf")
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        _q(txt, None, tmp_path / "o.onnx")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    with pytest.raises(ModelLoadError):
        _q(cut, None, tmp_path / "o.onnx")
    with pytest.raises(ModelLoadError, match="no such file"):
        _q(tmp_path / "missing.onnx", None, tmp_path / "o.onnx")
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize("bad,match", [(np.nan, "NaN/infinite"), (np.inf, "NaN/infinite")])
def test_nonfinite_calibration_data(bad, match):
    feeds = float_feeds(matmul_chain(), 2, b=2, s=3)
    feeds[1]["x"][0, 0, 0] = bad
    with pytest.raises(OnnxqError, match=f"sample 1: input 'x' holds 1 {match}"):
        _q(matmul_chain(), feeds)


def test_empty_calibration_data():
    with pytest.raises(OnnxqError, match="calibration data is empty"):
        _q(matmul_chain(), [])
    with pytest.raises(OnnxqError, match="is empty"):
        _q(matmul_chain(), [{"x": np.zeros((0, 3, 32), np.float32)}])


def test_missing_unknown_names_dtype_rank_shape():
    m = matmul_chain()
    good = float_feeds(m, 1, b=2, s=3)[0]
    with pytest.raises(OnnxqError, match=r"missing input\(s\) \['x'\]"):
        _q(m, [{"y": good["x"]}])
    with pytest.raises(OnnxqError, match=r"unknown input name\(s\) \['extra'\]"):
        _q(m, [{**good, "extra": good["x"]}])
    with pytest.raises(OnnxqError, match=r"is float64, the model wants float32 \(convert it with .astype"):
        _q(m, [{"x": good["x"].astype(np.float64)}])
    with pytest.raises(OnnxqError, match="has 2 dims"):
        _q(m, [{"x": good["x"][0]}])
    with pytest.raises(OnnxqError, match="dim 2 is 31, the model wants 32"):
        _q(m, [{"x": good["x"][..., :31]}])
    with pytest.raises(OnnxqError, match="expected a dict"):
        _q(m, [good["x"]])


def test_output_over_input_is_refused(model_file: Path):
    d = _digest(model_file)
    with pytest.raises(OnnxqError, match="is the input model"):
        _q(model_file, float_feeds(matmul_chain(), 1, b=1, s=2), model_file)
    assert _digest(model_file) == d


def test_needs_data_and_nothing_to_quantize_and_bad_config():
    with pytest.raises(OnnxqError, match="needs calibration data"):
        _q(matmul_chain(), None)
    with pytest.raises(OnnxqError, match="nothing to quantize"):
        _q(matmul_chain(), None, op_types=("Conv",))
    with pytest.raises(OnnxqError, match="unknown recipe"):
        onnxq.QuantConfig.from_recipe("fp4")
    with pytest.raises(OnnxqError, match="not a valid regular expression"):
        _q(matmul_chain(), None, exclude=("(",))
    with pytest.raises(OnnxqError, match="unknown calibration method"):
        _q(matmul_chain(), None, calibration_method="kl")


def test_bad_npz_files(tmp_path: Path):
    single = tmp_path / "one.npy"
    np.save(single, np.zeros(3, np.float32))
    with pytest.raises(OnnxqError, match="single array"):
        _q(matmul_chain(), [str(single)])
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    with pytest.raises(OnnxqError, match="holds no .npz"):
        _q(matmul_chain(), str(empty_dir))


def test_cli_errors_are_one_line_and_leave_no_files(tmp_path: Path, model_file: Path, capsys):
    calib = tmp_path / "calib"
    calib.mkdir()
    f = float_feeds(matmul_chain(), 1, b=2, s=3)[0]
    f["x"][0, 0, 0] = np.nan
    np.savez(calib / "0.npz", **f)
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(["quantize", str(model_file), "-o", str(tmp_path / "q.onnx"), "--data", str(calib), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("onnxq: error: ") and "NaN" in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    r = subprocess.run([sys.executable, "-m", "onnxq", "quantize", str(tmp_path / "nope.onnx"), "-o",
                        str(tmp_path / "q.onnx")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and r.stderr.strip() == f"onnxq: error: {tmp_path / 'nope.onnx'}: no such file"
