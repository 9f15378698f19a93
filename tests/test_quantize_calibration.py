"""Calibration: the streaming histogram, each range method on distributions with known answers, and the
memory-bounded runner (tensors split into groups give exactly the same histograms)."""

from __future__ import annotations

import numpy as np
import pytest
from _qmodels import attention_feeds, attention_model, float_feeds, matmul_chain

from onnxq.calibration import StreamingHistogram, select_range
from onnxq.calibration.histogram import NBINS
from onnxq.core.config import QuantConfig
from onnxq.core.formats import NumericFormat, format_named
from onnxq.passes import preprocess
from onnxq.passes.calibrate import calibrate
from onnxq.passes.context import PassContext

RNG = np.random.default_rng(0)
GAUSS = RNG.standard_normal(400_000).astype(np.float32)
UNIF = RNG.uniform(-2, 2, 400_000).astype(np.float32)
HEAVY = np.concatenate([RNG.standard_normal(400_000), [80.0, -60.0]]).astype(np.float32)  # two outliers


def _hist(x: np.ndarray, chunks: int = 7) -> StreamingHistogram:
    h = StreamingHistogram()
    for c in np.array_split(x, chunks):
        h.update(c)
    return h


def _mse(x: np.ndarray, spec: NumericFormat, r: tuple[float, float]) -> float:
    return float(np.mean((spec.simulate(x, *r) - x) ** 2))


def test_histogram_streaming_equals_one_shot_and_is_fixed_size():
    a, b = _hist(GAUSS, 1), _hist(GAUSS, 13)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.counts.size == NBINS and a.n == GAUSS.size
    assert a.min == GAUSS.min() and a.max == GAUSS.max()
    # every value sits in the bin of its own float bits
    lo, hi, cnt = a.signed_bins()
    assert cnt.sum() == GAUSS.size and np.all(lo <= hi)


def test_histogram_counts_nonfinite_apart():
    h = StreamingHistogram()
    h.update(np.array([1.0, np.nan, np.inf, -np.inf, -2.0, 0.0], np.float32))
    assert h.nonfinite == 3 and h.n == 3 and (h.min, h.max) == (-2.0, 1.0)


def test_minmax_is_exact():
    h = _hist(HEAVY)
    assert select_range(h, "minmax", format_named("int8")) == (-80.0, 80.0)
    assert select_range(h, "minmax", format_named("uint8")) == (float(HEAVY.min()), 80.0)


@pytest.mark.parametrize("p", [99.0, 99.9, 99.99])
def test_percentile_matches_numpy(p):
    h = _hist(GAUSS)
    lo, hi = select_range(h, "percentile", format_named("fp8-e4m3fn"), percentile=p)
    want = np.percentile(np.abs(GAUSS), p)
    assert hi == -lo and abs(hi - want) / want < 0.01
    lo, hi = select_range(h, "percentile", format_named("uint8"), percentile=p)
    assert abs(hi - np.percentile(GAUSS, p)) < 0.03 and abs(lo - np.percentile(GAUSS, 100 - p)) < 0.03


def test_uniform_is_not_clipped_by_any_method():
    h = _hist(UNIF)
    for m in ("minmax", "percentile", "entropy", "mse"):
        lo, hi = select_range(h, m, format_named("int8"))
        assert 1.9 <= hi <= 2.0001, (m, hi)


def test_gaussian_int8_mse_clips_near_the_known_optimum():
    """For 8-bit uniform quantization of N(0, 1) the MSE-optimal clip is about 3.9 sigma (Banner et al., ACIQ)."""
    h = _hist(GAUSS)
    _, hi = select_range(h, "mse", format_named("int8"))
    assert 3.3 < hi < 4.6
    _, ent = select_range(h, "entropy", format_named("int8"))
    assert 3.3 < ent <= GAUSS.max()


@pytest.mark.parametrize("grid", ["int8", "uint8"])
def test_mse_finds_the_true_mse_optimum_on_heavy_tails(grid):
    """Brute force on the raw samples: the histogram's choice is within 2% of the best true MSE."""
    h = _hist(HEAVY)
    spec = format_named(grid)
    lo, hi = select_range(h, "minmax", spec)
    best = min(_mse(HEAVY, spec, (lo * f, hi * f)) for f in np.geomspace(1, 1 / 64, 200))
    r = select_range(h, "mse", spec)
    assert _mse(HEAVY, spec, r) <= best * 1.02
    assert _mse(HEAVY, spec, r) < _mse(HEAVY, spec, (lo, hi)) / 2


def test_entropy_and_percentile_clip_outliers():
    h = _hist(HEAVY)
    spec = format_named("int8")
    for m in ("entropy", "percentile"):
        r = select_range(h, m, spec)
        assert r[1] < 20, (m, r)
        assert _mse(HEAVY, spec, r) < _mse(HEAVY, spec, select_range(h, "minmax", spec)), m


def test_fp8_mse_keeps_outliers_that_fp8_can_afford():
    """FP8's log grid loses little by covering outliers: MSE should not clip a 2-outlier tail to 4 sigma."""
    h = _hist(HEAVY)
    spec = format_named("fp8-e4m3fn")
    r = select_range(h, "mse", spec)
    assert _mse(HEAVY, spec, r) <= _mse(HEAVY, spec, select_range(h, "minmax", spec)) * 1.0001


def test_fixed_and_empty_ranges():
    h = StreamingHistogram()
    assert select_range(h, "mse", format_named("uint8")) == (0.0, 0.0)
    assert select_range(_hist(GAUSS), "mse", format_named("uint8"), fixed=(0.0, 1.0)) == (0.0, 1.0)
    assert select_range(_hist(GAUSS), "minmax", format_named("fp8-e5m2"), fixed=(0.0, 1.0)) == (-1.0, 1.0)
    with pytest.raises(ValueError):
        select_range(h, "kl", format_named("int8"))


def test_relu_zeros_do_not_break_entropy():
    x = np.maximum(GAUSS, 0)
    _, hi = select_range(_hist(x), "entropy", format_named("uint8"))
    assert hi > 2.5


@pytest.mark.parametrize("memory_mb", [1e-4, 1024.0])
def test_grouped_calibration_equals_single_run(memory_mb):
    """A tiny memory budget makes one run per tensor; the histograms must be identical to one run for all."""
    m = matmul_chain()
    feeds = float_feeds(m, 3, b=2, s=5)
    cfg = QuantConfig(calibration_memory_mb=memory_mb)
    pre = preprocess.run(m, PassContext(quant=cfg))
    tensors = ["x", "h2"]
    res = calibrate(pre, tensors, ((f"s{i}", f) for i, f in enumerate(feeds)), cfg)
    ref = calibrate(pre, tensors, ((f"s{i}", f) for i, f in enumerate(feeds)), QuantConfig())
    assert res.samples == 3
    for t in tensors:
        np.testing.assert_array_equal(res.histograms[t].counts, ref.histograms[t].counts)
    x = np.concatenate([f["x"].ravel() for f in feeds])
    assert res.ranges["x"] == (-float(np.abs(x).max()), float(np.abs(x).max()))


def test_calibration_with_different_shapes_per_feed():
    m = attention_model()
    feeds = attention_feeds(2, b=2, s=5) + attention_feeds(2, b=3, s=11, seed=1)
    cfg = QuantConfig()
    pre = preprocess.run(m, PassContext(quant=cfg))
    res = calibrate(pre, ["x", "q", "p"], ((str(i), f) for i, f in enumerate(feeds)), cfg)
    assert res.samples == 4 and res.histograms["p"].max <= 1.0


def test_constant_zero_activation_gets_a_warning_not_a_zero_scale():
    m = attention_model()
    cfg = QuantConfig()
    pre = preprocess.run(m, PassContext(quant=cfg))
    res = calibrate(pre, ["z"], ((str(i), f) for i, f in enumerate(attention_feeds(2))), cfg)
    assert res.ranges["z"] == (0.0, 0.0)
    assert any("constant 0" in w for w in res.warnings)
