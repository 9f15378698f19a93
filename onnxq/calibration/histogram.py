"""A streaming histogram whose bins are the float32 bit patterns themselves.

Bin = the top 14 bits of a float32 (sign, 8 exponent bits, 5 mantissa bits): 32 bins per octave over the
whole float range, each bin exactly the set of floats sharing those bits. So binning is one shift and one
``bincount`` (no log, no range to guess up front, no re-binning when a larger value arrives), the relative
bin width is at most 1/32 (finer than FP8's 1/8 or 1/4 grid), and memory per tensor is fixed at 16384
counts (128 KiB) however many samples stream through. Exact min / max / count are kept beside it.
"""

from __future__ import annotations

import numpy as np

_SHIFT = 18  # 32 - 14
NBINS = 1 << 14
_HALF = NBINS // 2
_INF_KEY = 0x7F800000 >> _SHIFT  # first key with exponent all ones (inf / NaN)


def _bin_edges() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper magnitude of each non-negative bin (keys 0 .. _INF_KEY-1), float64."""
    keys = np.arange(_INF_KEY, dtype=np.uint32)
    lo = (keys << _SHIFT).view(np.float32).astype(np.float64)
    hi = ((keys + 1) << _SHIFT).view(np.float32).astype(np.float64)
    hi[-1] = float(np.finfo(np.float32).max)
    return lo, hi


_LO, _HI = _bin_edges()


class StreamingHistogram:
    """Counts of one tensor's values over every batch seen; see the module docstring."""

    __slots__ = ("counts", "min", "max", "n", "nonfinite")

    def __init__(self) -> None:
        self.counts = np.zeros(NBINS, dtype=np.int64)
        self.min = np.inf
        self.max = -np.inf
        self.n = 0
        self.nonfinite = 0

    def update(self, values: np.ndarray) -> None:
        a = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        if a.size == 0:
            return
        keys = a.view(np.uint32) >> _SHIFT
        c = np.bincount(keys, minlength=NBINS)
        # inf / NaN keys: count them, keep them out of the bins and the range
        bad = int(c[_INF_KEY:_HALF].sum() + c[_HALF + _INF_KEY:].sum())
        if bad:
            c[_INF_KEY:_HALF] = 0
            c[_HALF + _INF_KEY:] = 0
            finite = a[np.isfinite(a)]
        else:
            finite = a
        self.counts += c
        self.nonfinite += bad
        self.n += int(a.size) - bad
        if finite.size:
            self.min = min(self.min, float(finite.min()))
            self.max = max(self.max, float(finite.max()))

    def merge(self, other: StreamingHistogram) -> None:
        self.counts += other.counts
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        self.n += other.n
        self.nonfinite += other.nonfinite

    @property
    def amax(self) -> float:
        return max(abs(self.min), abs(self.max)) if self.n else 0.0

    def signed_bins(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Non-empty bins as (lower value, upper value, count), ordered from most negative to most positive.
        For negative bins lower < upper too (the interval is [-hi, -lo])."""
        pos = self.counts[:_INF_KEY]
        neg = self.counts[_HALF:_HALF + _INF_KEY]
        ip, ineg = np.nonzero(pos)[0], np.nonzero(neg)[0][::-1]
        lo = np.concatenate([-_HI[ineg], _LO[ip]])
        hi = np.concatenate([-_LO[ineg], _HI[ip]])
        cnt = np.concatenate([neg[ineg], pos[ip]]).astype(np.float64)
        # clamp the outermost bins to the exact extremes (a bin can be wider than the data in it)
        if cnt.size:
            lo = np.maximum(lo, self.min)
            hi = np.minimum(hi, self.max)
            lo = np.minimum(lo, hi)
        return lo, hi, cnt

    def abs_bins(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bins of |x|: (lower, upper, count), ascending."""
        c = self.counts[:_INF_KEY] + self.counts[_HALF:_HALF + _INF_KEY]
        idx = np.nonzero(c)[0]
        lo, hi = _LO[idx], np.minimum(_HI[idx], self.amax)
        return np.minimum(lo, hi), hi, c[idx].astype(np.float64)
