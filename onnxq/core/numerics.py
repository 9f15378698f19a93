"""Quantization arithmetic, written out from the ONNX spec (no ml_dtypes in the code path; the tests use
ml_dtypes as the independent reference).

* FP8 (E4M3FN, E5M2): ``QuantizeLinear(saturate=1)`` divides by the scale in float32, clamps to the format's
  finite range (infinities included), then rounds to nearest, ties to even. NaN stays NaN.
* INT8 / UINT8: divide in float32, round half to even, add the zero point, saturate.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto


@dataclass(frozen=True)
class Fp8Spec:
    name: str
    onnx_type: int
    exp_bits: int
    man_bits: int
    bias: int
    max: float
    nan_bits: int  # the positive NaN encoding written for NaN input

    @property
    def min_normal_exp(self) -> int:
        return 1 - self.bias

    @property
    def subnormal_step(self) -> float:
        return 2.0 ** (1 - self.bias - self.man_bits)


E4M3FN = Fp8Spec("e4m3fn", TensorProto.FLOAT8E4M3FN, 4, 3, 7, 448.0, 0x7F)
E5M2 = Fp8Spec("e5m2", TensorProto.FLOAT8E5M2, 5, 2, 15, 57344.0, 0x7E)
FP8 = {"e4m3fn": E4M3FN, "e5m2": E5M2}


def fp8_encode(x: np.ndarray, spec: Fp8Spec) -> np.ndarray:
    """float32 -> FP8 bit patterns (uint8): saturate to the finite range (infinities too), then round to
    nearest, ties to even; NaN -> the format's NaN. Integer arithmetic on the float32 bits:

    * normal results: drop the low ``23 - M`` mantissa bits with round-half-even (a carry into the exponent is
      the correct rounding up to the next binade), then re-bias the exponent;
    * subnormal results: the value in units of the subnormal step is an exact power-of-two scaling, rounded
      half-even; 2**M there is the smallest normal, which the same integer encodes.
    """
    x = np.asarray(x, dtype=np.float32)
    nan = np.isnan(x)
    a = np.minimum(np.abs(x), np.float32(spec.max))  # NaN stays NaN here; replaced below
    a = np.where(nan, np.float32(0), a)
    bits = a.view(np.uint32)
    drop = 23 - spec.man_bits
    rounded = (bits + np.uint32((1 << (drop - 1)) - 1) + ((bits >> drop) & np.uint32(1))) >> drop
    normal_enc = rounded.astype(np.int64) - ((127 - spec.bias) << spec.man_bits)
    sub_enc = np.rint(a * np.float32(2.0 ** (spec.bias - 1 + spec.man_bits))).astype(np.int64)
    enc = np.where(a >= np.float32(2.0 ** spec.min_normal_exp), normal_enc, sub_enc).astype(np.uint8)
    enc |= (np.signbit(x).astype(np.uint8) << 7)
    return np.where(nan, np.uint8(spec.nan_bits) | (np.signbit(x).astype(np.uint8) << 7), enc).astype(np.uint8)


def fp8_round(x: np.ndarray, spec: Fp8Spec) -> np.ndarray:
    """Round float32 values onto the FP8 grid with saturation (what ``QuantizeLinear(saturate=1)`` then
    ``DequantizeLinear`` give for scale 1). Returns float32; NaN stays NaN; +-inf -> +-max."""
    return _decode_table(spec)[fp8_encode(x, spec)]


@functools.cache
def _decode_table(spec: Fp8Spec) -> np.ndarray:
    return _make_decode_table(spec)


def fp8_decode_table(spec: Fp8Spec) -> np.ndarray:
    """All 256 FP8 bit patterns as float32 (NaN where the format has NaN, +-inf for E5M2)."""
    return _decode_table(spec).copy()


def _make_decode_table(spec: Fp8Spec) -> np.ndarray:
    b = np.arange(256, dtype=np.int64)
    sign = np.where(b & 0x80, -1.0, 1.0)
    ef = (b >> spec.man_bits) & ((1 << spec.exp_bits) - 1)
    mf = b & ((1 << spec.man_bits) - 1)
    val = np.where(ef == 0, mf * spec.subnormal_step,
                   (1 + mf / (1 << spec.man_bits)) * np.exp2(ef.astype(np.float64) - spec.bias))
    out = (sign * val).astype(np.float32)
    if spec is E4M3FN:
        out[(b & 0x7F) == 0x7F] = np.nan
    else:  # E5M2 is IEEE-like: exponent all ones is inf (mantissa 0) or NaN
        top = ef == (1 << spec.exp_bits) - 1
        out[top & (mf == 0)] = sign[top & (mf == 0)] * np.inf
        out[top & (mf != 0)] = np.nan
    return out


def fp8_decode(bits: np.ndarray, spec: Fp8Spec) -> np.ndarray:
    return _decode_table(spec)[np.asarray(bits, dtype=np.uint8)]


def quantize_fp8(x: np.ndarray, scale: np.ndarray | float, spec: Fp8Spec) -> np.ndarray:
    """ONNX QuantizeLinear(x, scale, zp=0, saturate=1) to FP8 bit patterns (scale broadcast against x)."""
    return fp8_encode(np.asarray(x, np.float32) / np.asarray(scale, np.float32), spec)


def qdq_fp8(x: np.ndarray, scale: np.ndarray | float, spec: Fp8Spec) -> np.ndarray:
    """QuantizeLinear then DequantizeLinear, as float32."""
    s = np.asarray(scale, np.float32)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return (fp8_round(np.asarray(x, np.float32) / s, spec) * s).astype(np.float32)


def quantize_int(x: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int, lo: int, hi: int,
                 dtype: type) -> np.ndarray:
    """ONNX QuantizeLinear to an integer type: saturate(round_half_even(x / scale) + zero_point)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        r = np.rint(np.asarray(x, np.float32) / np.asarray(scale, np.float32)).astype(np.float64)
    r = r + np.asarray(zero_point, np.float64)
    return np.clip(np.nan_to_num(r, nan=0.0), lo, hi).astype(dtype)


def qdq_int(x: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int, lo: int, hi: int) -> np.ndarray:
    q = quantize_int(x, scale, zero_point, lo, hi, np.int32).astype(np.float32)
    return ((q - np.asarray(zero_point, np.float32)) * np.asarray(scale, np.float32)).astype(np.float32)


# ------------------------------------------------------------------------------------ scale / zero point

#: the smallest scale ever written: a range that collapses to (nearly) zero gets this floor instead of 0,
#: so no QuantizeLinear divides by zero and no DequantizeLinear writes NaN
MIN_AMAX = 1e-8


def safe_amax(amax: np.ndarray | float) -> np.ndarray:
    """Replace zero / tiny / non-finite ranges by 1.0 (a tensor that was all zeros stays exactly 0 under any
    scale; 1.0 keeps small run-time values representable)."""
    a = np.asarray(amax, np.float64)
    return np.where(np.isfinite(a) & (a > MIN_AMAX), a, 1.0)


def fp8_scale(amax: np.ndarray | float, spec: Fp8Spec) -> np.ndarray:
    return (safe_amax(amax) / spec.max).astype(np.float32)


def int8_symmetric_scale(amax: np.ndarray | float) -> np.ndarray:
    return (safe_amax(amax) / 127.0).astype(np.float32)


def uint8_asymmetric_params(lo: float, hi: float) -> tuple[np.float32, np.uint8]:
    """Scale / zero point for u8 covering [min(lo, 0), max(hi, 0)]; 0 is exactly representable."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo <= MIN_AMAX:
        lo, hi = (0.0, 1.0) if not (np.isfinite(lo) and np.isfinite(hi)) or lo == 0.0 else (lo, 0.0)
        if hi - lo <= MIN_AMAX:
            lo, hi = 0.0, 1.0
    scale = np.float32((hi - lo) / 255.0)
    zp = np.uint8(np.clip(np.rint(-lo / float(scale)), 0, 255))
    return scale, zp
