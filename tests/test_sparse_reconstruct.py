"""OBS / SparseGPT-style reconstruction for block pruning (onnxq/passes/reconstruct_sparse.py): the update against
a direct least-squares solution, block-structured masks at magnitude pruning's per-layer sparsity, a clearly
lower held-out error than magnitude pruning on the tiny encoder, composition with quantization and packing, and
the errors for bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from _stock import stock_session
from onnx import numpy_helper

import onnxq
import onnxq.ep as ep
from onnxq.apps.model_builders import int8_qdq_static
from onnxq.core import block_sparse as fmt
from onnxq.core.errors import OnnxqError
from onnxq.passes.reconstruct_sparse import dense_fit, relative_error, sparsegpt_prune

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
MODEL = SAMPLES / "tiny_encoder.onnx"
CALIB_NPZ = SAMPLES / "calib_tiny_encoder.npz"
D = 64


def _mixing() -> np.ndarray:
    """Real activations are strongly correlated; i.i.d. Gaussian inputs would make X^T X ~ c I, where OBS has
    nothing to gain over magnitude pruning. Inputs here are z @ A with a decaying spectrum."""
    rng = np.random.default_rng(1234)
    return (rng.standard_normal((D, D)) * (0.85 ** np.arange(D))[:, None]).astype(np.float32)


def _feeds(seed: int, count: int, batch: int = 4, seq: int = 16) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    a = _mixing()
    return [{"x": rng.standard_normal((batch, seq, D)).astype(np.float32) @ a} for _ in range(count)]


def _rel_err(ref: onnx.ModelProto | Path, model: onnx.ModelProto, feeds) -> float:
    r = ort.InferenceSession(str(ref) if isinstance(ref, Path) else ref.SerializeToString(),
                             providers=["CPUExecutionProvider"])
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    num = den = 0.0
    for f in feeds:
        a, b = r.run(None, f)[0], s.run(None, f)[0]
        num += float(np.sum((a - b) ** 2))
        den += float(np.sum(a ** 2))
    return num / den


def _weights(m: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer if t.name.endswith(".weight")}


# ------------------------------------------------------------------------------------------------ the update


def test_obs_update_equals_least_squares_for_one_pruned_block():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 12)) @ rng.standard_normal((12, 12))  # correlated inputs
    w = rng.standard_normal((12, 3))
    h = x.T @ x
    keep = np.ones((3, 3), bool)
    keep[0, 1] = False  # rows 0..3 of column 1: every other row of the column is free
    keep[1, 0] = False  # rows 4..7 of column 0: rows 0..3 are already processed (frozen), rows 8..11 free
    w1, kept = sparsegpt_prune(w, h, (4, 1), keep=keep, damp=0.0, batch_rows=4)
    np.testing.assert_array_equal(kept, keep)
    assert np.all(w1[0:4, 1] == 0) and np.all(w1[4:8, 0] == 0)
    free = np.arange(4, 12)
    ls = np.linalg.lstsq(x[:, free], x @ w[:, 1], rcond=None)[0]
    np.testing.assert_allclose(w1[free, 1], ls, rtol=1e-9, atol=1e-9)
    free = np.arange(8, 12)
    ls = np.linalg.lstsq(x[:, free], x @ w[:, 0] - x[:, :4] @ w[:4, 0], rcond=None)[0]
    np.testing.assert_allclose(w1[free, 0], ls, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(w1[:4, 0], w[:4, 0])
    np.testing.assert_array_equal(w1[:, 2], w[:, 2])  # nothing pruned in column 2: untouched
    # the layer's output error is the least-squares optimum, far below zeroing the block alone
    zeroed = np.where(np.repeat(keep, 4, axis=0), w, 0.0)
    assert relative_error(w, w1, h) < 0.5 * relative_error(w, zeroed, h)


def test_dense_fit():
    rng = np.random.default_rng(3)
    xd = rng.standard_normal((80, 10))
    x = xd + 0.3 * rng.standard_normal((80, 10))  # the pruned model's version of the same rows
    w0 = rng.standard_normal((10, 4))
    np.testing.assert_array_equal(dense_fit(xd.T @ xd, xd.T @ xd, w0, 0.01), w0)  # same inputs: W0 itself
    ls = np.linalg.lstsq(x, xd @ w0, rcond=None)[0]
    np.testing.assert_allclose(dense_fit(x.T @ x, x.T @ xd, w0, 0.0), ls, rtol=1e-9, atol=1e-9)


def test_selection_is_block_structured_and_exact_per_layer():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 64)) @ rng.standard_normal((64, 64))
    w = rng.standard_normal((64, 24))
    h = x.T @ x
    for bk, bn, count in ((4, 1, 300), (2, 4, 150), (4, 1, 1)):
        w1, keep = sparsegpt_prune(w, h, (bk, bn), prune_blocks=count, batch_rows=12)
        assert int((~keep).sum()) == count
        zero_blocks = np.all((w1 == 0).reshape(64 // bk, bk, 24 // bn, bn), axis=(1, 3))
        np.testing.assert_array_equal(zero_blocks, ~keep)  # zeros exactly the chosen blocks


def test_dead_inputs_are_pruned_first():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 16))
    x[:, 4:8] = 0  # inputs 4..7 never fire
    h = x.T @ x
    w = rng.standard_normal((16, 4)) + 5.0  # large weights: magnitude would keep them all alike
    w1, keep = sparsegpt_prune(w, h, (4, 1), prune_blocks=4)
    assert not keep[1].any() and keep[[0, 2, 3]].all()
    np.testing.assert_allclose(w1, np.where(np.repeat(keep, 4, axis=0), w, 0.0), atol=1e-9)  # nothing to repair


# ------------------------------------------------------------------------------------------------ the model


@pytest.fixture(scope="module")
def tiny():
    return onnx.load(MODEL)


@pytest.mark.parametrize("sparsity", [0.5, 0.75])
def test_same_per_layer_sparsity_as_magnitude_and_lower_held_out_error(tiny, sparsity):
    before = tiny.SerializeToString()
    cfg = dict(sparsity=sparsity, min_elements=1024, pack=False)
    mag = onnxq.sparsify(tiny, None, onnxq.SparsifyConfig(**cfg))
    rec = onnxq.sparsify(tiny, None, onnxq.SparsifyConfig(**cfg, reconstruct=True), data=_feeds(1, 8))
    assert tiny.SerializeToString() == before
    assert [(w.initializer, w.shape, w.sparsity) for w in rec.prune.weights] == \
        [(w.initializer, w.shape, w.sparsity) for w in mag.prune.weights]
    dense = _weights(tiny)
    for name, w in _weights(rec.model).items():
        k, n = w.shape
        zero = np.all((w == 0).reshape(k // 4, 4, n), axis=1)
        assert abs(zero.mean() - sparsity) < 0.01, name  # whole 4x1 blocks are zero
        assert not np.array_equal(w, np.where(w == 0, 0, dense[name]))  # kept weights were updated
    for r in rec.reconstruct.weights:
        assert r.error < r.error_magnitude  # on the calibration data, per layer
    held_out = _feeds(99, 4)
    e_mag, e_rec = _rel_err(MODEL, mag.model, held_out), _rel_err(MODEL, rec.model, held_out)
    assert e_rec < 0.5 * e_mag, (e_mag, e_rec)


def test_one_pass_and_global_scope(tiny):
    calib = _feeds(1, 4)
    held_out = _feeds(99, 4)
    mag = onnxq.sparsify(tiny, None, onnxq.SparsifyConfig(sparsity=0.7, min_elements=1024, pack=False,
                                                          scope="global"))
    rec = onnxq.sparsify(tiny, None, onnxq.SparsifyConfig(sparsity=0.7, min_elements=1024, pack=False,
                                                          scope="global", reconstruct=True, sequential=False),
                         data=calib)
    assert rec.reconstruct.waves == 1
    assert [w.sparsity for w in rec.prune.weights] == [w.sparsity for w in mag.prune.weights]
    assert _rel_err(MODEL, rec.model, held_out) < 0.5 * _rel_err(MODEL, mag.model, held_out)


def test_layer_target(tiny):
    calib = _feeds(1, 4)
    held_out = _feeds(99, 4)
    cfg = dict(sparsity=0.7, min_elements=1024, pack=False)
    mag = onnxq.sparsify(tiny, None, onnxq.SparsifyConfig(**cfg))
    rec = onnxq.sparsify(tiny, None, onnxq.SparsifyConfig(**cfg, reconstruct=True, dense_target=False), data=calib)
    assert rec.reconstruct.waves == 4
    assert [w.sparsity for w in rec.prune.weights] == [w.sparsity for w in mag.prune.weights]
    assert _rel_err(MODEL, rec.model, held_out) < 0.5 * _rel_err(MODEL, mag.model, held_out)


def test_npz_path_and_cli(tmp_path):
    from onnxq.apps.cli import main

    before = MODEL.read_bytes()
    out = tmp_path / "rec.onnx"
    assert main(["sparsify", str(MODEL), "-o", str(out), "--sparsity", "0.5", "--min-elements", "1024",
                 "--reconstruct", "--data", str(CALIB_NPZ), "--no-progress"]) == 0
    assert MODEL.read_bytes() == before
    m = onnx.load(out)
    assert sum(n.op_type == fmt.PLAIN_FUNCTION for n in m.graph.node) == 6
    assert main(["sparsify", str(MODEL), "-o", str(tmp_path / "x.onnx"), "--reconstruct"]) == 1
    assert main(["sparsify", str(MODEL), "-o", str(tmp_path / "y.onnx"), "--data", str(CALIB_NPZ)]) == 1
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "y.onnx").exists()


def test_reconstructed_then_quantized_and_packed_runs_on_ort_and_the_ep(tiny, monkeypatch):
    calib = _feeds(1, 4)
    rec = onnxq.sparsify(tiny, None, onnxq.SparsifyConfig(sparsity=0.9, min_elements=1024, pack=False,
                                                          reconstruct=True), data=calib).model
    q = int8_qdq_static(rec, calib)
    packed = onnxq.sparsify(q, None, onnxq.SparsifyConfig(sparsity=0.0)).model
    assert sum(n.op_type == fmt.PLAIN_FUNCTION for n in packed.graph.node) == 6
    x = _feeds(7, 1, batch=2)[0]
    dense = stock_session(q.SerializeToString()).run(None, x)[0]  # ONNX's float route (tests/_stock.py)
    data = packed.SerializeToString()
    ref = stock_session(data).run(None, x)[0]
    np.testing.assert_array_equal(dense, ref)  # packing is lossless
    outs = {}
    for mode in ("always", "never"):
        monkeypatch.setenv("ONNXQ_SPARSE", mode)
        sess = ep.session(data)
        assert [n.split(":")[0] for n in ep.assigned_nodes(sess).get(ep.EP_NAME, [])].count(fmt.PLAIN_FUNCTION) == 6
        outs[mode] = sess.run(None, x)[0]
    np.testing.assert_array_equal(outs["always"], outs["never"])
    assert np.max(np.abs(outs["always"] - ref)) <= 1e-2 * np.max(np.abs(ref))


def test_bad_inputs(tiny):
    rec = onnxq.SparsifyConfig(sparsity=0.5, min_elements=1024, reconstruct=True)
    with pytest.raises(OnnxqError, match="needs calibration data"):
        onnxq.sparsify(tiny, None, rec)
    with pytest.raises(OnnxqError, match="only used with reconstruct"):
        onnxq.sparsify(tiny, None, onnxq.SparsifyConfig(sparsity=0.5), data=_feeds(1, 1))
    bad = _feeds(1, 2)
    bad[1]["x"][0, 3, 5] = np.nan
    with pytest.raises(OnnxqError, match="NaN"):
        onnxq.sparsify(tiny, None, rec, data=bad)
    with pytest.raises(OnnxqError, match="empty"):
        onnxq.sparsify(tiny, None, rec, data=[])
    with pytest.raises(OnnxqError, match="missing input"):
        onnxq.sparsify(tiny, None, rec, data=[{"y": np.zeros((1, 4, D), np.float32)}])
    with pytest.raises(OnnxqError, match="damp"):
        onnxq.sparsify(tiny, None, onnxq.SparsifyConfig(sparsity=0.5, min_elements=1024, reconstruct=True,
                                                        damp=-1.0), data=_feeds(1, 1))
    q = int8_qdq_static(tiny, _feeds(1, 2))
    with pytest.raises(OnnxqError, match="already quantized.*Reconstruct the float model first"):
        onnxq.sparsify(q, None, rec, data=_feeds(1, 1))
