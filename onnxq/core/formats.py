"""Numeric formats as objects: each knows its ONNX type, its storage dtype, its scale rule, its encoding and
whether Q/DQ nodes carry a zero point. Passes ask the format; none branches on a format's name.

    fmt = format_named("fp8-e4m3fn")
    codes, scale = fmt.quantize_weight(w, axis=1)       # per-output-channel, zero point 0
    scale, zp = fmt.activation_params(lo, hi)           # zp is None where Q/DQ carry none (FP8)

A *scheme* pairs the weight format with the activation format; ``QuantConfig.format`` names one
(``int8`` = s8 symmetric weights x u8 asymmetric activations). Adding a format is one class (or one instance)
here plus its name in ``FORMATS`` and, if users pick it, a scheme in ``SCHEMES``.

The arithmetic (rounding, saturation, the FP8 bit encoding) lives in ``onnxq.core.numerics``, written from the
ONNX spec; this module decides which of it each format uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
from onnx import TensorProto

from onnxq.core.errors import OnnxqError
from onnxq.core.numerics import (
    E4M3FN,
    E5M2,
    Fp8Spec,
    fp8_scale,
    qdq_fp8,
    qdq_int,
    quantize_fp8,
    quantize_int,
    safe_amax,
    uint8_asymmetric_params,
)


class NumericFormat:
    """One 8-bit format. Subclasses fill in the scale rule and the encoding."""

    name: str
    onnx_type: int  # TensorProto data type of the stored codes
    storage_dtype: np.dtype  # numpy dtype of the stored codes (ml_dtypes for FP8)
    symmetric: bool  # ranges are +-amax (no zero point offset)
    #: activations' QuantizeLinear / DequantizeLinear get a zero-point input (FP8: no, see insert_qdq)
    activation_zero_point: bool = True

    def weight_scale(self, amax: np.ndarray | float) -> np.ndarray:
        """float32 scale(s) mapping |w| <= amax onto the format, zero point 0."""
        raise NotImplementedError

    def encode(self, x: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
        """QuantizeLinear(x, scale, zero point 0) as stored codes (``storage_dtype``)."""
        raise NotImplementedError

    def activation_params(self, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray | None]:
        """(scale, zero point or None) for a per-tensor range; a collapsed range gets a safe scale, never 0."""
        raise NotImplementedError

    def simulate(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """Quantize then dequantize ``x`` with the grid covering (lo, hi) (calibration's MSE / KL search)."""
        raise NotImplementedError

    def quantize_attributes(self) -> dict[str, Any]:
        """Attributes of an activation's QuantizeLinear (FP8 names its type there, having no zero point)."""
        return {}

    @property
    def max_magnitude(self) -> float:
        """The largest |code| a symmetric scale maps amax to (per-token scales: max|row| / this, in the graph)."""
        raise NotImplementedError

    def quantize_weight(self, w: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(codes in ``storage_dtype``, float32 scale: 1-D along ``axis``, or a scalar for ``axis=None``)."""
        w = np.asarray(w, np.float32)
        if axis is None:
            amax = np.abs(w).max() if w.size else 0.0
            bshape: tuple[int, ...] = ()
        else:
            red = tuple(i for i in range(w.ndim) if i != axis)
            amax = np.abs(w).max(axis=red) if w.size else np.zeros(w.shape[axis])
            bshape = tuple(w.shape[axis] if i == axis else 1 for i in range(w.ndim))
        scale = self.weight_scale(amax)
        return self.encode(w, scale.reshape(bshape)), np.asarray(scale, np.float32)

    def __repr__(self) -> str:
        return f"<format {self.name}>"


@dataclass(frozen=True, repr=False)
class IntegerFormat(NumericFormat):
    """Symmetric in [-hi, hi] (INT8: [-127, 127]; weights, optionally activations; scale amax / hi) or UINT8
    asymmetric in [0, 255] with a zero point."""

    name: str
    onnx_type: int
    storage_dtype: np.dtype
    lo: int
    hi: int
    symmetric: bool

    def weight_scale(self, amax: np.ndarray | float) -> np.ndarray:
        if not self.symmetric:
            raise OnnxqError(f"{self.name} is asymmetric: weights are stored in a symmetric format")
        return (safe_amax(amax) / float(self.hi)).astype(np.float32)

    def encode(self, x: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
        return quantize_int(x, scale, 0, self.lo, self.hi, self.storage_dtype.type)

    def activation_params(self, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray | None]:
        if self.symmetric:
            scale = self.weight_scale(float(safe_amax(max(abs(lo), abs(hi)))))
            return np.asarray(scale, np.float32), np.zeros((), self.storage_dtype)
        s, z = uint8_asymmetric_params(lo, hi)
        return np.asarray(s, np.float32), np.asarray(z, self.storage_dtype)

    @property
    def max_magnitude(self) -> float:
        return float(self.hi)

    def simulate(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        if self.symmetric:
            return qdq_int(x, np.float32(max(hi, 1e-30) / float(self.hi)), 0, -self.hi, self.hi)
        scale, zp = uint8_asymmetric_params(lo, hi)
        return qdq_int(x, scale, int(zp), 0, 255)


@dataclass(frozen=True, repr=False)
class Fp8Format(NumericFormat):
    """FP8 with saturating round-to-nearest-even (``QuantizeLinear(saturate=1)``), symmetric, zero point 0.
    Activation Q/DQ carry no zero point (the type is the QuantizeLinear's ``output_dtype``)."""

    name: str
    spec: Fp8Spec
    storage_dtype: np.dtype
    symmetric: bool = True
    activation_zero_point: bool = False

    @property
    def onnx_type(self) -> int:  # type: ignore[override]
        return self.spec.onnx_type

    def weight_scale(self, amax: np.ndarray | float) -> np.ndarray:
        return fp8_scale(amax, self.spec)

    def encode(self, x: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
        return quantize_fp8(x, scale, self.spec).view(self.storage_dtype)

    def activation_params(self, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray | None]:
        return np.asarray(fp8_scale(max(abs(lo), abs(hi)), self.spec), np.float32), None

    def simulate(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return qdq_fp8(x, np.float32(max(hi, 1e-30) / self.spec.max), self.spec)

    def quantize_attributes(self) -> dict[str, Any]:
        return {"saturate": 1, "output_dtype": self.spec.onnx_type}

    @property
    def max_magnitude(self) -> float:
        return float(self.spec.max)


INT8 = IntegerFormat("int8", TensorProto.INT8, np.dtype(np.int8), -127, 127, True)
UINT8 = IntegerFormat("uint8", TensorProto.UINT8, np.dtype(np.uint8), 0, 255, False)
FP8_E4M3FN = Fp8Format("fp8-e4m3fn", E4M3FN, np.dtype(ml_dtypes.float8_e4m3fn))
FP8_E5M2 = Fp8Format("fp8-e5m2", E5M2, np.dtype(ml_dtypes.float8_e5m2))

#: every format by name
FORMATS: dict[str, NumericFormat] = {f.name: f for f in (INT8, UINT8, FP8_E4M3FN, FP8_E5M2)}


def format_named(name: str) -> NumericFormat:
    if name not in FORMATS:
        raise OnnxqError(f"unknown numeric format '{name}'; choose from {', '.join(FORMATS)}")
    return FORMATS[name]


@dataclass(frozen=True)
class Scheme:
    """What ``QuantConfig.format`` names: the weights' format and the activations' (and the symmetric
    alternative for activations, taken with ``int8_symmetric_activations``)."""

    name: str
    weights: NumericFormat
    activations: NumericFormat
    symmetric_activations: NumericFormat

    def activation_format(self, symmetric: bool = False) -> NumericFormat:
        return self.symmetric_activations if symmetric else self.activations


SCHEMES: dict[str, Scheme] = {
    "fp8-e4m3": Scheme("fp8-e4m3", FP8_E4M3FN, FP8_E4M3FN, FP8_E4M3FN),
    "fp8-e5m2": Scheme("fp8-e5m2", FP8_E5M2, FP8_E5M2, FP8_E5M2),
    # s8 weights x u8 activations: onnxruntime's and the onnxq EP's fast path
    "int8": Scheme("int8", INT8, UINT8, INT8),
}
