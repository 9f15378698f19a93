"""Choosing a tensor's quantization range from its streaming histogram.

Every method works on the histogram only (never on stored samples), so memory is bounded by the histograms.

* ``minmax``     — the exact extremes seen.
* ``percentile`` — the ``percentile``-th percentile of |x| (symmetric formats) or the (100-p)-th / p-th
  percentiles of x (asymmetric u8), interpolated inside the bin.
* ``mse``        — the range, scaled down from min/max by factors 2^(-j/16), that minimises the mean squared
  error of quantize-dequantize over the histogram (each bin represented by 4 evenly spaced points), using the
  real target grid: FP8 (E4M3FN / E5M2) or INT8 / UINT8.
* ``entropy``    — the same candidates, minimising KL(P || Q) as TensorRT / MXNet do, generalised to any grid:
  P is the histogram clipped to the range with the clipped mass folded into the edge bins; Q is the in-range
  mass *without* that fold, spread uniformly (per unit length) over each quantization cell of the real grid.
  Clipping puts mass in P's edge bins that Q lacks; a coarse grid flattens Q; both cost KL. As in TensorRT
  (thresholds from 128 of 2048 bins), the range is never below 1/16 of the extremes.
"""

from __future__ import annotations

import numpy as np

from onnxq.calibration.histogram import StreamingHistogram
from onnxq.core.config import METHODS
from onnxq.core.formats import NumericFormat

_CANDIDATE_STEPS = 16 * 12  # factors 1 .. 2^-12 in steps of 2^(1/16)
_POINTS_PER_BIN = 4


def select_range(hist: StreamingHistogram, method: str, spec: NumericFormat, *, percentile: float = 99.999,
                 fixed: tuple[float, float] | None = None) -> tuple[float, float]:
    """(lo, hi) for this tensor; symmetric grids get (-amax, amax). ``fixed`` (a known output range, e.g.
    Softmax's [0, 1]) wins over the data. An empty histogram gives (0, 0): callers floor it to a safe scale."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    if fixed is not None:
        lo, hi = fixed
        return (-max(abs(lo), abs(hi)), max(abs(lo), abs(hi))) if spec.symmetric else (min(lo, 0.0), max(hi, 0.0))
    if hist.n == 0:
        return 0.0, 0.0
    lo, hi = min(hist.min, 0.0), max(hist.max, 0.0)
    if spec.symmetric:
        amax = hist.amax
        lo, hi = -amax, amax
    if method == "minmax" or hi - lo <= 0:
        return lo, hi
    if method == "percentile":
        return _percentile(hist, spec, percentile)
    factors = 2.0 ** (-np.arange(_CANDIDATE_STEPS + 1) / 16.0)
    if method == "mse":
        losses = _mse_losses(hist, spec, lo, hi, factors)
    else:
        # like TensorRT (thresholds from 128 of 2048 bins up): never clip below 1/16 of the extremes, where
        # the few samples left inside make KL degenerate (it falls again as the range collapses)
        factors = factors[factors >= 1 / 16]
        losses = _kl_losses(hist, spec, lo, hi, factors)
    best = float(factors[int(np.argmin(losses))])
    return lo * best, hi * best


def _interp_quantile(lo: np.ndarray, hi: np.ndarray, cnt: np.ndarray, q: float) -> float:
    """The value below which a fraction q of the mass lies (linear inside a bin)."""
    cum = np.cumsum(cnt)
    target = q * cum[-1]
    i = int(np.searchsorted(cum, target, side="left"))
    i = min(i, cnt.size - 1)
    before = cum[i - 1] if i > 0 else 0.0
    frac = 0.0 if cnt[i] == 0 else min(max((target - before) / cnt[i], 0.0), 1.0)
    return float(lo[i] + frac * (hi[i] - lo[i]))


def _percentile(hist: StreamingHistogram, spec: NumericFormat, p: float) -> tuple[float, float]:
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    if spec.symmetric:
        lo, hi, cnt = hist.abs_bins()
        a = _interp_quantile(lo, hi, cnt, p / 100.0)
        return -a, a
    lo, hi, cnt = hist.signed_bins()
    return (min(_interp_quantile(lo, hi, cnt, 1 - p / 100.0), 0.0),
            max(_interp_quantile(lo, hi, cnt, p / 100.0), 0.0))


def _points(hist: StreamingHistogram, spec: NumericFormat) -> tuple[np.ndarray, np.ndarray]:
    lo, hi, cnt = hist.abs_bins() if spec.symmetric else hist.signed_bins()
    t = (np.arange(_POINTS_PER_BIN) + 0.5) / _POINTS_PER_BIN
    x = (lo[:, None] + (hi - lo)[:, None] * t[None, :]).reshape(-1)
    w = np.repeat(cnt / _POINTS_PER_BIN, _POINTS_PER_BIN)
    return x, w


def _mse_losses(hist, spec, lo, hi, factors) -> np.ndarray:  # type: ignore[no-untyped-def]
    x, w = _points(hist, spec)
    x32 = x.astype(np.float32)
    out = np.empty(factors.size)
    for j, f in enumerate(factors):
        err = spec.simulate(x32, lo * f, hi * f).astype(np.float64) - x
        out[j] = float(np.dot(w, err * err))
    return out


def _kl_losses(hist, spec, lo, hi, factors) -> np.ndarray:  # type: ignore[no-untyped-def]
    blo, bhi, cnt = hist.abs_bins() if spec.symmetric else hist.signed_bins()
    # exact zeros (ReLU, padding) are a point mass that every grid represents exactly: leave them out, or
    # spreading per unit length would charge them for the width of the cell around 0
    keep = (blo != 0) | (bhi > 1e-37)
    blo, bhi, cnt = blo[keep], bhi[keep], cnt[keep]
    if cnt.size == 0:
        return np.zeros(factors.size)
    centers = 0.5 * (blo + bhi)
    width = np.maximum(bhi - blo, 1e-45)
    out = np.empty(factors.size)
    for j, f in enumerate(factors):
        rlo, rhi = lo * f, hi * f
        idx = np.nonzero((centers >= rlo) & (centers <= rhi))[0]
        if idx.size == 0:
            out[j] = np.inf
            continue
        inside, w = cnt[idx], width[idx]
        # P: the clipped distribution, the clipped mass folded into the edge bins
        p = inside.copy()
        p[0] += cnt[centers < rlo].sum()
        p[-1] += cnt[centers > rhi].sum()
        # Q: the in-range mass (without the folded outliers) spread uniformly over each quantization cell
        _, group = np.unique(spec.simulate(centers[idx].astype(np.float32), rlo, rhi), return_inverse=True)
        gmass = np.bincount(group, weights=inside)
        gwidth = np.bincount(group, weights=w)
        q = gmass[group] * w / gwidth[group]
        pn, qn = p / p.sum(), q / q.sum()
        m = pn > 0
        out[j] = float(np.sum(pn[m] * np.log(pn[m] / np.maximum(qn[m], 1e-300))))
    return out
