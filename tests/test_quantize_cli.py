"""`onnxq quantize` and `onnxq compare` end to end on .npz data; their JSON; help text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from _qmodels import attention_feeds, attention_model

from onnxq.apps.cli import main
from onnxq.core.model_io import save_model


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "attn.onnx"
    save_model(attention_model(), src)
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, f in enumerate(attention_feeds(3)):
        np.savez(calib / f"{i:03d}.npz", **f)
    return src, calib


@pytest.mark.parametrize("fmt,method", [("fp8-e4m3", "mse"), ("fp8-e5m2", "entropy"), ("int8", "percentile")])
def test_quantize_then_compare(tmp_path: Path, setup, capsys, fmt, method):
    src, calib = setup
    out = tmp_path / "q.onnx"
    rep = tmp_path / "report.json"
    assert main(["quantize", str(src), "-o", str(out), "--format", fmt, "--data", str(calib), "--method", method,
                 "--report", str(rep), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"format    {fmt}" in text and f"calibrate {method}, 3 batch(es)" in text
    onnx.checker.check_model(str(out), full_check=True)
    r = json.loads(rep.read_text())
    assert r["format"] == fmt and r["calibration_samples"] == 3 and r["weight_bytes_after"] < r["weight_bytes_before"]
    cj = tmp_path / "cmp.json"
    assert main(["compare", str(src), str(out), "--data", str(calib), "--json", str(cj), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "output    y: SQNR" in text and "layers" in text
    c = json.loads(cj.read_text())
    assert c["samples"] == 3 and c["outputs"]["y"]["row_cosine"] > 0.9
    assert {"q_proj", "scores", "context", "softmax"} <= set(c["layers"])
    assert all("sqnr_db" in v for v in c["layers"].values())


def test_weight_only_accuracy_target_and_exclude(tmp_path: Path, setup, capsys):
    src, calib = setup
    out = tmp_path / "w.onnx"
    assert main(["quantize", str(src), "-o", str(out), "--recipe", "fp8-e4m3-weight-only", "--no-progress"]) == 0
    assert "none (weight-only)" in capsys.readouterr().out
    assert main(["quantize", str(src), "-o", str(out), "--format", "fp8-e5m2", "--data", str(calib),
                 "--accuracy-target", "0.9999", "--exclude", "zero_.*", "--exclude", "after_zero",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "accuracy  cosine" in text and "float   " in text
    assert "zero_proj: excluded by pattern 'zero_.*'" in text


def test_synthetic_calibration_is_labelled(tmp_path: Path, setup, capsys):
    src, _ = setup
    assert main(["quantize", str(src), "-o", str(tmp_path / "s.onnx"), "--synthetic-calibration", "2",
                 "--dim", "b=2", "--dim", "s=4", "--no-progress"]) == 0
    cap = capsys.readouterr()
    assert "SYNTHETIC" in cap.out and "SYNTHETIC" in cap.err


@pytest.mark.parametrize("argv,needles", [
    (["quantize", "--help"], ["--format", "--data", "--method", "--per-tensor", "--exclude", "--accuracy-target",
                              "--recipe", "fp8-e4m3-weight-only", "--synthetic-calibration", "--op-types",
                              "--smooth"]),
    (["compare", "--help"], ["--data", "--json", "SQNR"]),
])
def test_help(capsys, argv, needles):
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 0
    out = capsys.readouterr().out
    for n in needles:
        assert n in out


def test_compare_measures_the_quantized_outputs_with_the_ep(tmp_path: Path, setup, capsys):
    # `onnxq compare` runs the quantized model as it is deployed (the onnxq EP, exact on every CPU) and says so; the
    # layer taps come from stock onnxruntime (noted). --runtime onnxruntime measures with stock onnxruntime alone.
    src, calib = setup
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(src), "-o", str(out), "--format", "int8", "--data", str(calib), "--no-progress"]) == 0
    capsys.readouterr()
    reports = {}
    for runtime in ("onnxq", "onnxruntime"):
        cj = tmp_path / f"{runtime}.json"
        assert main(["compare", str(src), str(out), "--data", str(calib), "--json", str(cj), "--no-progress",
                     "--runtime", runtime]) == 0
        text = capsys.readouterr().out
        reports[runtime] = json.loads(cj.read_text())
        assert f"runtime   {reports[runtime]['runtime']}" in text
    assert reports["onnxq"]["runtime"].startswith("onnxq EP (ISA level ")
    assert reports["onnxruntime"]["runtime"].startswith("onnxruntime ")
    assert any("stock onnxruntime" in n for n in reports["onnxq"]["notes"])
    # the same model and data: both measure a faithful quantized model (the EP's INT8 is exact; stock onnxruntime's
    # may differ by its CPU's rounding / saturation, so only closeness is asserted)
    for r in reports.values():
        assert r["outputs"]["y"]["row_cosine"] > 0.9


def test_accuracy_search_says_what_measured_the_candidates(tmp_path: Path, setup, capsys):
    src, calib = setup
    out = tmp_path / "a.onnx"
    rep = tmp_path / "a.json"
    assert main(["quantize", str(src), "-o", str(out), "--format", "int8", "--data", str(calib),
                 "--accuracy-target", "0.9999", "--report", str(rep), "--no-progress"]) == 0
    notes = json.loads(rep.read_text())["notes"]
    assert any(n.startswith("accuracy search measured candidates with onnxq EP (ISA level ") for n in notes), notes
