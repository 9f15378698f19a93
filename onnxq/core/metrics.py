"""Fidelity metrics between a reference and a quantized output, as running sums (streaming: one batch at a
time): SQNR, cosine, mean row cosine (rows along the last axis: one embedding / logit vector each), max |error|.
``onnxq compare`` and the accuracy search both measure with these."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from onnxq.core.errors import OnnxqError


@dataclass
class TensorStats:
    """Running sums for one tensor pair (reference r, quantized q)."""

    rr: float = 0.0
    ee: float = 0.0
    rq: float = 0.0
    qq: float = 0.0
    max_abs_err: float = 0.0
    row_cos_sum: float = 0.0
    rows: int = 0
    nonfinite: int = 0

    def update(self, r: np.ndarray, q: np.ndarray) -> None:
        r = np.asarray(r, np.float64)
        q = np.asarray(q, np.float64)
        if r.shape != q.shape:
            raise OnnxqError(f"shapes differ between the models: {r.shape} vs {q.shape}")
        fin_r, fin_q = np.isfinite(r), np.isfinite(q)
        if not (fin_r.all() and fin_q.all()):
            # the same infinity on both sides (attention masks) agrees; anything else non-finite is an error
            same = ~fin_r & ~fin_q & (r == q)
            self.nonfinite += int(np.sum(~fin_q & ~same))
            both = fin_r & fin_q
            r, q = np.where(both, r, 0.0), np.where(both, q, 0.0)
        e = q - r
        self.rr += float(np.sum(r * r))
        self.ee += float(np.sum(e * e))
        self.rq += float(np.sum(r * q))
        self.qq += float(np.sum(q * q))
        if e.size:
            self.max_abs_err = max(self.max_abs_err, float(np.max(np.abs(e))))
        r2 = r.reshape(-1, r.shape[-1]) if r.ndim >= 1 and r.size else r.reshape(1, -1)
        q2 = q.reshape(r2.shape)
        nr, nq = np.linalg.norm(r2, axis=1), np.linalg.norm(q2, axis=1)
        both = (nr > 0) & (nq > 0)
        cos = np.where(both, np.sum(r2 * q2, axis=1) / np.where(both, nr * nq, 1.0), np.where(nr == nq, 1.0, 0.0))
        self.row_cos_sum += float(cos.sum())
        self.rows += int(cos.size)

    @property
    def sqnr_db(self) -> float:
        if self.nonfinite:
            return -math.inf
        if self.ee == 0:
            return math.inf
        if self.rr == 0:
            return -math.inf
        return 10.0 * math.log10(self.rr / self.ee)

    @property
    def cosine(self) -> float:
        if self.nonfinite:
            return 0.0
        d = math.sqrt(self.rr * self.qq)
        return self.rq / d if d > 0 else (1.0 if self.rr == self.qq else 0.0)

    @property
    def row_cosine(self) -> float:
        return self.row_cos_sum / self.rows if self.rows and not self.nonfinite else 0.0

    def summary(self) -> dict[str, float]:
        return {"sqnr_db": _r(self.sqnr_db), "cosine": _r(self.cosine, 6), "row_cosine": _r(self.row_cosine, 6),
                "max_abs_err": _r(self.max_abs_err, 6), "nonfinite": self.nonfinite}


def _r(x: float, nd: int = 3) -> float:
    return round(x, nd) if math.isfinite(x) else x
