"""The model zoo pipeline end to end on models the repository builds itself (no torch): a numpy-trained classifier
on seeded blobs (real accuracy) and model_builders' MLP (fidelity), two recipes, plus a broken model entry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from onnxq.apps.cli import main
from onnxq.apps.zoo import ZooSettings, registry, run_zoo
from onnxq.apps.zoo import recipes as zrecipes
from onnxq.core.errors import OnnxqError


def _settings(tmp_path: Path) -> ZooSettings:
    return ZooSettings(out=tmp_path / "out", cache=tmp_path / "cache", recipes=("int8", "fp8-e4m3"),
                       bench_passes=1, bench_reps=1, progress=False)


def test_zoo_end_to_end_resume_and_failure_isolation(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not an ONNX model")
    models = ["blobs-mlp", "mlp", str(bad)]
    res = run_zoo(models, _settings(tmp_path), executor="process", jobs=2)
    out = tmp_path / "out"
    for name in ("zoo.md", "zoo.json"):
        assert (out / name).is_file()
    for name in ("zoo_accuracy_latency.png", "zoo_bars.png", "zoo_coverage.png"):  # plots come by default
        assert (out / name).read_bytes()[:4] == b"\x89PNG"

    report = json.loads((out / "zoo.json").read_text())
    by = {m["model"]: m for m in report["models"]}
    assert len(by) == 3 and [m["model"] for m in res.models] == list(by)
    broken = next(m for m in report["models"] if m["family"] == "file")
    assert broken["status"] == "failed" and "not a valid ONNX model" in broken["error"]
    for name in ("blobs-mlp", "mlp"):
        m = by[name]
        assert m["status"] == "ok", m
        assert [r["recipe"] for r in m["rows"]] == ["fp32", "int8", "fp8-e4m3"]
        for r in m["rows"]:
            assert r["status"] == "ok" and r["ort_ms"] > 0 and r["onnxq_ms"] > 0, r
            assert 0.9 < r["metrics"]["fidelity_cos"] <= 1.0 + 1e-9
        assert m["steps"]["failed"] == 0 and m["steps"]["skipped"] == 0
    acc = {r["recipe"]: r["metrics"]["accuracy"] for r in by["blobs-mlp"]["rows"]}
    assert 0.7 < acc["fp32"] < 1.0 and abs(acc["int8"] - acc["fp32"]) < 0.02
    assert by["blobs-mlp"]["rows"][1]["claimed"]["onnxq"] > 0  # the EP ran the INT8 model
    assert report["coverage"]["fp32"] == {"models": 2, "within_1pct": 2, "share": 1.0}
    assert report["coverage_task_metric"]["int8"]["models"] == 1
    md = (out / "zoo.md").read_text()
    assert "Workload coverage" in md and "not a valid ONNX model" in md and "fidelity only" in md

    # the cached export is reused and never modified; a second run skips every finished step
    export = Path(by["mlp"]["fp32_path"])
    mtime = export.stat().st_mtime_ns
    res2 = run_zoo(models, _settings(tmp_path), executor="serial")
    assert export.stat().st_mtime_ns == mtime
    for m in res2.models:
        if m["family"] == "file":
            assert m["status"] == "failed"
            continue
        # export, 2 convert, 3 evaluate, benchmark
        assert m["steps"]["done"] == 0 and m["steps"]["skipped"] == 7, m["steps"]
        assert m["rows"][1]["metrics"] == by[m["model"]]["rows"][1]["metrics"]


def test_zoo_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OnnxqError, match="unknown zoo model"):
        registry.resolve(["no-such-model"])
    with pytest.raises(OnnxqError, match="unknown zoo recipe"):
        zrecipes.resolve(["int4"])
    assert main(["zoo", "run", "--models", "mlp", "--recipes", "int4", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("onnxq: error: unknown zoo recipe") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    (tmp_path / "file").write_text("x")
    assert main(["zoo", "run", "--models", "mlp", "--out", str(tmp_path / "file")]) == 1
    assert "is a file" in capsys.readouterr().err
    assert main(["zoo", "list"]) == 0
    listing = capsys.readouterr().out
    assert "fmnist-cnn" in listing and "int8-bs4x1-80" in listing


def test_zoo_serial_in_process_with_sparse_recipe(tmp_path: Path) -> None:
    s = ZooSettings(out=tmp_path / "out", cache=tmp_path / "cache", recipes=("int8-bs4x1-50",), benchmark=False,
                    progress=False)
    res = run_zoo(["tiny-encoder"], s)
    rows = res.models[0]["rows"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[1]["convert"]["packed_weights"] > 0 and rows[1]["bytes"] < rows[0]["bytes"]
    assert "ort_ms" not in rows[1]


def test_zoo_reconstruct_recipe_beats_magnitude(tmp_path: Path) -> None:
    # same model, same sparsity, same calibration: the reconstructed recipe must stay closer to FP32
    s = ZooSettings(out=tmp_path / "out", cache=tmp_path / "cache", recipes=("int8-bs4x1-80", "int8-bs4x1-80-obs"),
                    benchmark=False, progress=False)
    res = run_zoo(["tiny-encoder"], s)
    rows = {r["recipe"]: r for r in res.models[0]["rows"]}
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows["int8-bs4x1-80-obs"]["convert"]["packed_weights"] > 0
    mag, obs = rows["int8-bs4x1-80"]["metrics"], rows["int8-bs4x1-80-obs"]["metrics"]
    key = next(k for k in ("cosine", "mean_cosine", "output_cosine") if k in mag)
    assert obs[key] > mag[key] + 0.005, (mag, obs)  # 0.829 -> 0.842 here (random-weight model)


@pytest.mark.skipif(not os.environ.get("ONNXQ_TEST_RAY"), reason="set ONNXQ_TEST_RAY=1 (starts a local Ray)")
def test_zoo_ray_executor(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        res = run_zoo(["mlp", "blobs-mlp"], _settings(tmp_path), executor="ray", jobs=2)
    finally:
        ray.shutdown()
    assert [m["status"] for m in res.models] == ["ok", "ok"]
    assert all(r.get("onnxq_ms", 0) > 0 for m in res.models for r in m["rows"])


def test_zoo_run_that_fails_a_model_exits_nonzero_and_names_the_extra(tmp_path: Path, monkeypatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A model whose packages are missing fails with the extra to install, and the command's exit status says so."""
    import dataclasses

    needy = dataclasses.replace(registry.MODELS["mlp"], name="needs-extras", requires=("sklearn", "no_such_mod_xyz"))
    monkeypatch.setitem(registry.MODELS, "needs-extras", needy)
    assert main(["zoo", "run", "--models", "needs-extras", "--out", str(tmp_path / "o"), "--no-bench",
                 "--no-progress", "--cache", str(tmp_path / "c")]) == 1
    captured = capsys.readouterr()
    assert "1 of 1 zoo model(s) failed" in captured.err
    report = json.loads((tmp_path / "o" / "zoo.json").read_text())
    err = report["models"][0]["error"]
    assert "no_such_mod_xyz" in err and "pip install 'onnxq[zoo]'" in err
