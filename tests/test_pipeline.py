"""The Python core's shape: formats are objects, a pass is ``run(model, ctx) -> model``, a pipeline is a list of
pass names, imports only point down, and any order of sparsify / quantize gives the right file."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxq
from onnxq.apps.model_builders import mlp_model, sample_inputs
from onnxq.core.block_sparse import DOMAIN
from onnxq.core.config import QuantConfig, SparsifyConfig
from onnxq.core.formats import FORMATS, SCHEMES, format_named
from onnxq.passes.context import PassContext
from onnxq.pipeline import recipes
from onnxq.pipeline.runner import load_pass, run_passes

PKG = Path(onnxq.__file__).resolve().parent


# ---------------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_round_trips_weights_within_half_a_step(name):
    fmt = format_named(name)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 24)).astype(np.float32)
    if not fmt.symmetric:
        with pytest.raises(onnxq.core.errors.OnnxqError, match="asymmetric"):
            fmt.quantize_weight(w, 1)
        return
    q, s = fmt.quantize_weight(w, 1)
    assert q.dtype == fmt.storage_dtype and s.shape == (24,)
    back = q.astype(np.float32) * s[None, :]
    # per column, the largest |w| is represented exactly (up to float32 rounding of the scale)
    np.testing.assert_allclose(np.abs(back).max(axis=0), np.abs(w).max(axis=0), rtol=1e-6)
    assert onnx.helper.tensor_dtype_to_np_dtype(fmt.onnx_type) == fmt.storage_dtype


@pytest.mark.parametrize("name", list(FORMATS))
def test_activation_params_cover_the_range_and_never_zero(name):
    fmt = format_named(name)
    for lo, hi in ((-3.0, 5.0), (0.0, 0.0), (0.0, 2.0)):
        s, z = fmt.activation_params(lo, hi)
        assert float(s) > 0
        assert (z is None) == (not fmt.activation_zero_point)
        x = np.array([lo, hi], np.float32)
        sim = fmt.simulate(x, lo, hi) if fmt.symmetric else fmt.simulate(x, lo, hi)
        if hi > lo:
            np.testing.assert_allclose(sim, x, atol=float(s) * (4 if fmt.symmetric else 1), rtol=0.07)


def test_schemes_name_the_config_formats():
    assert tuple(SCHEMES) == onnxq.core.config.FORMATS
    assert QuantConfig(format="int8").activation_format.name == "uint8"
    assert QuantConfig(format="int8", int8_symmetric_activations=True).activation_format.name == "int8"
    assert QuantConfig(format="fp8-e5m2").weight_format.name == "fp8-e5m2"


def test_no_pass_branches_on_a_format_name():
    """Passes ask the format object (issue 12): no comparisons against format names in onnxq/passes."""
    names = set(FORMATS) | set(SCHEMES) | {"e4m3fn", "e5m2"}
    for path in sorted((PKG / "passes").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                consts = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
                assert not set(consts) & names, f"{path.name}:{node.lineno} compares with a format name"
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("is_fp8", "fp8_name", "activation_grid"), f"{path.name}:{node.lineno}"


# ---------------------------------------------------------------------------------------------------- layering

#: each package and the floors it may import from (lower floors only)
FLOORS = {
    "core": {"core"},
    "calibration": {"core", "calibration"},
    "ep": {"core", "cpu", "plugin"},
    "cpu": {"core"},
    "plugin": {"core"},
    "passes": {"core", "calibration", "passes"},
    "pipeline": {"core", "calibration", "passes", "pipeline", "ep", "cpu"},
}


def _onnxq_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("onnxq."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "onnxq":
            out.update(a.name for a in node.names if a.name != "__version__")
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("onnxq."))
    return out


@pytest.mark.parametrize("floor", list(FLOORS))
def test_imports_only_point_down(floor):
    files = [PKG / f"{floor}.py"] if (PKG / f"{floor}.py").is_file() else sorted((PKG / floor).rglob("*.py"))
    assert files
    for f in files:
        bad = _onnxq_imports(f) - FLOORS[floor] - {"_kernels"}
        assert not bad, f"{f.relative_to(PKG)} imports from {sorted(bad)} (above its floor)"


def test_library_floors_hold_no_benchmark_or_test_model_code():
    library = [p for floor in ("core", "calibration", "passes", "pipeline") for p in (PKG / floor).rglob("*.py")]
    for f in library:
        assert not {"bench", "bench_sparse", "bench_deepsparse", "zoo", "testing", "apps"} & _onnxq_imports(f), f


# ---------------------------------------------------------------------------------------------------- pass shape


def test_every_pass_in_every_recipe_has_the_one_shape():
    for recipe in recipes.RECIPES.values():
        for name in recipe:
            run = load_pass(name)
            params = list(run.__code__.co_varnames[: run.__code__.co_argcount])
            assert params == ["model", "ctx"], (name, params)


def test_a_new_pass_is_a_module_and_a_recipe_line(monkeypatch):
    """What adding a pass takes: a module in onnxq.passes with run(model, ctx) and its name in a recipe."""
    seen = []

    def run(model, ctx):
        seen.append(len(ctx.plan.weights))
        ctx.notes.append("scratch pass ran")
        return model

    mod = types.ModuleType("onnxq.passes.scratch_note")
    mod.run = run
    monkeypatch.setitem(sys.modules, "onnxq.passes.scratch_note", mod)
    recipe = list(recipes.QUANTIZE)
    recipe.insert(recipe.index("select_targets") + 1, "scratch_note")
    ctx = PassContext(quant=QuantConfig.from_recipe("fp8-e4m3-weight-only"))
    out = run_passes(mlp_model(), recipe, ctx)
    onnx.checker.check_model(out, full_check=True)
    assert seen == [3] and "scratch pass ran" in ctx.notes


def test_unknown_pass_is_a_clear_error():
    with pytest.raises(onnxq.core.errors.OnnxqError, match="unknown pass 'nope'"):
        load_pass("nope")


def test_passes_never_mutate_the_configs():
    cfg = QuantConfig.from_recipe("int8")
    before = repr(cfg)
    m = mlp_model()
    feeds = [sample_inputs(m, batch=4, seed=i) for i in range(2)]
    r = onnxq.quantize(m, None, cfg, feeds)
    assert repr(cfg) == before and r.notes  # smoothing wrote a note to the report, not to the config


# ---------------------------------------------------------------------------------------------------- any order


def _big_mlp():
    return mlp_model(sizes=(128, 256, 256, 64))


def _feeds(m, n=3):
    return [sample_inputs(m, batch=8, seed=i) for i in range(n)]


def _packed(model: onnx.ModelProto) -> dict[str, int]:
    """values initializer -> its element type, for every packed weight."""
    inits = {t.name: t for t in model.graph.initializer}
    return {n.input[0]: inits[n.input[0]].data_type for n in model.graph.node if n.domain == DOMAIN}


def _run(model, feed):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)[0]


def test_quantizing_a_packed_sparse_model_quantizes_its_weights():
    """sparsify (pack) then quantize: the packed weights come out INT8 and packed again, equal to the three-step
    route (prune without packing, quantize, pack) in weights and outputs, and much smaller than float packing."""
    m, cfg = _big_mlp(), QuantConfig.from_recipe("int8")
    feeds = _feeds(m)
    sp = onnxq.sparsify(m, None, SparsifyConfig(sparsity=0.9, min_elements=0))
    assert set(_packed(sp.model).values()) == {onnx.TensorProto.FLOAT}
    q = onnxq.quantize(sp.model, None, cfg, feeds)
    assert q.sparsity is not None and q.sparsity["packed_weights"] == len(sp.pack.packed)
    assert set(_packed(q.model).values()) == {onnx.TensorProto.INT8}
    onnx.checker.check_model(q.model, full_check=True)
    # the three-step route of docs/sparsity.md
    pruned = onnxq.sparsify(m, None, SparsifyConfig(sparsity=0.9, min_elements=0, pack=False)).model
    three = onnxq.sparsify(onnxq.quantize(pruned, None, cfg, feeds).model, None,
                           SparsifyConfig(sparsity=0.0, min_elements=0)).model
    a = {t.name: t.raw_data for t in q.model.graph.initializer}
    b = {t.name: t.raw_data for t in three.graph.initializer}
    assert a == b
    np.testing.assert_array_equal(_run(q.model, feeds[0]), _run(three, feeds[0]))
    assert onnxq.pipeline.reports.initializer_bytes(q.model) < 0.5 * onnxq.pipeline.reports.initializer_bytes(sp.model)


def test_one_call_prunes_quantizes_and_packs():
    m, cfg = _big_mlp(), QuantConfig.from_recipe("int8")
    feeds = _feeds(m)
    one = onnxq.quantize(m, None, cfg, feeds, sparsify=SparsifyConfig(sparsity=0.9, min_elements=0))
    assert set(_packed(one.model).values()) == {onnx.TensorProto.INT8}
    assert one.sparsity["pruned_weights"] == 3 and one.sparsity["overall_sparsity"] == pytest.approx(0.9, abs=0.01)
    pruned = onnxq.sparsify(m, None, SparsifyConfig(sparsity=0.9, min_elements=0, pack=False)).model
    three = onnxq.sparsify(onnxq.quantize(pruned, None, cfg, feeds).model, None,
                           SparsifyConfig(sparsity=0.0, min_elements=0)).model
    np.testing.assert_array_equal(_run(one.model, feeds[0]), _run(three, feeds[0]))


def test_unpack_rejects_a_hostile_index():
    m = _big_mlp()
    sp = onnxq.sparsify(m, None, SparsifyConfig(sparsity=0.9, min_elements=0)).model
    rows = next(t for t in sp.graph.initializer if t.name.endswith(".block_rows"))
    arr = onnx.numpy_helper.to_array(rows).copy()
    arr[0] = 30000
    rows.CopyFrom(onnx.numpy_helper.from_array(arr, rows.name))
    with pytest.raises(onnxq.core.errors.OnnxqError, match="invalid packed weight"):
        onnxq.quantize(sp, None, QuantConfig.from_recipe("fp8-e4m3-weight-only"))


def test_cli_quantize_with_sparsity_writes_packed_int8(tmp_path):
    from onnxq.apps.cli import main

    m = _big_mlp()
    src = tmp_path / "m.onnx"
    onnx.save(m, src)
    np.savez(tmp_path / "c.npz", **_feeds(m, 1)[0])
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(src), "-o", str(out), "--format", "int8", "--data", str(tmp_path / "c.npz"),
                 "--sparsity", "0.8", "--no-progress"]) == 0
    assert set(_packed(onnx.load(out)).values()) == {onnx.TensorProto.INT8}


def test_a_new_format_is_one_object_and_a_scheme(monkeypatch):
    """What adding a format takes (issue 12): a NumericFormat in core/formats.py and a scheme naming it; no pass
    changes. Here a 7-bit symmetric integer grid stored as INT8 (weights and activations in [-63, 63])."""
    from onnxq.core import formats

    int7 = formats.IntegerFormat("int7", onnx.TensorProto.INT8, np.dtype(np.int8), -63, 63, True)
    monkeypatch.setitem(formats.SCHEMES, "int7", formats.Scheme("int7", int7, int7, int7))
    monkeypatch.setattr(onnxq.core.config, "FORMATS", tuple(formats.SCHEMES))
    m = mlp_model()
    feeds = [sample_inputs(m, batch=4, seed=i) for i in range(2)]
    q = onnxq.quantize(m, None, QuantConfig(format="int7"), feeds).model
    weights = [onnx.numpy_helper.to_array(t) for t in q.graph.initializer if t.name.endswith("_quantized")]
    assert weights and all(w.dtype == np.int8 and np.abs(w).max() == 63 for w in weights)
    out = _run(q, feeds[0])
    ref = _run(m, feeds[0])
    cos = float(np.sum(out * ref) / (np.linalg.norm(out) * np.linalg.norm(ref)))
    assert cos > 0.99
