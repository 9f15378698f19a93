"""Hard inputs for the FP8 / bf16 conversions, shared by the tests that hold every vector variant to the scalar
reference bit for bit: every FP8 value, every rounding tie between neighbours (exact ties at power-of-two scales),
the saturation boundary, FP8 subnormals, float denormals, NaN payloads, infinities, signed zeros and random float
bit patterns, each also one and two float ulps either side."""

from __future__ import annotations

import ml_dtypes
import numpy as np

FMTS = ("e4m3fn", "e5m2")
DT = {"e4m3fn": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2}
MAX = {"e4m3fn": 448.0, "e5m2": 57344.0}
STEP_AT_MAX = {"e4m3fn": 32.0, "e5m2": 8192.0}  # spacing of the top binade (1.75 * 2^e, 3 or 2 mantissa bits)
HALF_QUANTUM = {"e4m3fn": 2.0**-10, "e5m2": 2.0**-17}  # half the subnormal spacing: the subnormal ties
# 1 and powers of two keep the ties exact after x / scale; the others round x / scale first (odd quotients);
# 1e-30 sends most inputs past the saturation bound, 7.5e37 into float denormals
SCALES = (1.0, 0.25, 2.0**-12, 0.037, 3.0, 1 / 3, 1e-30, 7.5e37)

NAN_BITS = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FBFFFFF, 0x7FFFFFFF, 0xFFFFFFFF,
                     0x7FC0DEAD], np.uint32)


def _bits(v: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(v, np.float32).view(np.uint32)


def _neighbours(v: np.ndarray, ulps: int = 2) -> np.ndarray:
    """v and the floats `ulps` steps either side (on the bit pattern, sign-magnitude), finite v only."""
    v = v[np.isfinite(v)].astype(np.float32)
    b = _bits(np.abs(v)).astype(np.int64)
    sign = np.signbit(v)
    out = [v]
    for k in range(1, ulps + 1):
        for step in (-k, k):
            nb = np.clip(b + step, 0, 0x7F7FFFFF).astype(np.uint32).view(np.float32)
            out.append(np.where(sign, -nb, nb))
    return np.concatenate(out)


def fp8_grid(fmt: str) -> np.ndarray:
    """Every finite FP8 value of `fmt`, sorted (both zeros)."""
    g = np.arange(256, dtype=np.uint8).view(DT[fmt]).astype(np.float32)
    return np.sort(g[np.isfinite(g)])


def quantize_cases(fmt: str, scale: float, seed: int = 0) -> np.ndarray:
    """Float inputs x for QuantizeLinear(x / scale) to `fmt`."""
    rng = np.random.default_rng(seed)
    g = fp8_grid(fmt)
    mids = ((g[1:].astype(np.float64) + g[:-1]) / 2).astype(np.float32)  # exact: one more mantissa bit
    mx, step = MAX[fmt], STEP_AT_MAX[fmt]
    edges = np.array([mx, mx + step / 4, mx + step / 2, mx + step, 2 * mx, 1e30, 3.4028235e38], np.float32)
    sub = np.arange(0, 64, dtype=np.float32) * np.float32(HALF_QUANTUM[fmt])  # up to 4-8 x the smallest normal
    quot = np.concatenate([_neighbours(np.concatenate([g, mids, edges, sub])),
                           rng.standard_normal(4000).astype(np.float32) * np.float32(mx / 8)])
    with np.errstate(over="ignore", under="ignore"):
        x = (quot.astype(np.float64) * scale).astype(np.float32)  # x / scale lands on (or next to) quot
    x = np.concatenate([x, -x, _neighbours(x)])
    denormal = np.concatenate([np.arange(1, 200, dtype=np.uint32), rng.integers(1, 1 << 23, 2000, np.uint32)])
    random_bits = rng.integers(0, 1 << 32, 50000, np.uint64).astype(np.uint32)
    special = np.array([0.0, -0.0, np.inf, -np.inf], np.float32)
    return np.concatenate([x, denormal.view(np.float32), (denormal | 0x80000000).view(np.float32),
                           random_bits.view(np.float32), NAN_BITS.view(np.float32), special]).astype(np.float32)


def bf16_cases(seed: int = 0) -> np.ndarray:
    """Float inputs for the float -> bf16 rounding: every interesting low half under random high halves (ties with
    an even and an odd kept bit, the carry into the exponent, the largest finite floats rounding to infinity),
    denormals, NaN payloads (signalling ones too, with the payload in the dropped half), random bit patterns."""
    rng = np.random.default_rng(seed)
    hi = np.concatenate([rng.integers(0, 1 << 16, 3000, np.uint32), np.array([0x0000, 0x0001, 0x007F, 0x0080, 0x3F80,
                         0x3F81, 0x7F7F, 0x7F7E, 0x7F80, 0x8000, 0x8080, 0xFF7F, 0xFF80], np.uint32)])
    lo = np.array([0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xC000, 0xFFFF], np.uint32)
    structured = (hi[:, None] << 16 | lo[None, :]).ravel()
    random_bits = rng.integers(0, 1 << 32, 100000, np.uint64).astype(np.uint32)
    return np.concatenate([structured, random_bits, NAN_BITS]).view(np.float32)


def fp8_codes() -> np.ndarray:
    """All 256 codes, three times over in shifted orders (so every code lands in every lane position)."""
    c = np.arange(256, dtype=np.uint8)
    return np.concatenate([c, np.roll(c, 7), np.roll(c, 101)])
