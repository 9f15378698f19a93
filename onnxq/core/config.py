"""The configs: ``QuantConfig`` (every knob of the quantizer) with its named recipes, and ``SparsifyConfig``
(block pruning and packing). Plain dataclasses, validated before a run and never changed by one."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from onnxq.core.errors import OnnxqError
from onnxq.core.formats import SCHEMES, NumericFormat, Scheme

METHODS = ("minmax", "percentile", "entropy", "mse")  # onnxq.calibration.methods implements them

#: the names ``QuantConfig.format`` takes (a weight format and an activation format each: onnxq.core.formats)
FORMATS = tuple(SCHEMES)
#: ops whose weight input is quantized (per output channel) and whose activation inputs get Q/DQ
WEIGHT_OP_TYPES = ("MatMul", "Gemm", "Conv", "Gather")
#: outputs whose range is known: used instead of calibration (never a scale of 0, never a std of nothing)
FIXED_RANGE_OPS = {"Softmax": (0.0, 1.0), "Sigmoid": (0.0, 1.0), "Tanh": (-1.0, 1.0), "HardSigmoid": (0.0, 1.0)}


@dataclass
class QuantConfig:
    """What to quantize and how. Build one directly, or from a recipe: ``QuantConfig.from_recipe("int8")``.

    format: ``fp8-e4m3`` (FLOAT8E4M3FN), ``fp8-e5m2`` (FLOAT8E5M2) or ``int8`` (s8 weights, u8 activations).
    weight_granularity: ``per-channel`` (one scale per output channel) or ``per-tensor``.
    quantize_activations: False = weight-only (the float activation goes straight into the MatMul).
    activation_granularity: ``per-tensor`` (one calibrated scale per tensor) or ``per-token`` (ZeroQuant: the
      activation inputs of weight MatMul / Gemm get one scale per row, computed in the graph at run time as
      max|row| / the format's largest value; symmetric; no calibration for them).
    op_types: ops whose constant weight is quantized and whose float activation inputs get Q -> DQ.
      ``Gather`` quantizes embedding tables (weight only; its indices are not activations).
    activation_matmuls: also quantize both inputs of MatMuls between two activations (attention Q·Kᵀ, P·V).
    extra_activation_op_types: wider coverage (the FP8 study's): Q -> DQ on the float inputs of these ops too
      (for example ``Add``, ``Mul``, ``LayerNormalization``); weights of these ops stay float.
    exclude: node names or regular expressions (full match) to leave in float; exclude_op_types likewise.
    calibration_method: ``minmax``, ``percentile``, ``entropy`` or ``mse`` (activations; weights use their
      exact per-channel max). percentile: for ``percentile``.
    calibration_max_samples: use at most this many feeds from the calibration data (None = all).
    calibration_memory_mb: bound on the activation bytes one calibration ``run`` may return; the tensors are
      split into groups (the model runs once per group) when a batch's activations would not fit.
    int8_symmetric_activations: s8 symmetric activations instead of u8 asymmetric ones.
    smooth_alpha: SmoothQuant migration strength in (0, 1) (0 or None = off): per-input-channel scales move
      activation outliers into the weights of MatMul / Gemm consumers (``x/s`` via one ``Mul``; the smoothed
      activation's range is its per-channel min/max over s).
    fixed_ranges: use the known output range of Softmax / Sigmoid / Tanh instead of calibrating it.
    accuracy_target: keep the most sensitive layers in float until the output fidelity on the calibration
      data meets this (``accuracy_metric`` ``cosine``: mean cosine of model outputs; ``sqnr``: dB).
    accuracy_samples: feeds used for the sensitivity search.
    external_data: write weights to ``OUT.data`` (None = only when the model is over protobuf's 2 GiB).
    opset: the ONNX opset of the output (>= 19 for FP8 Q/DQ and saturate).
    """

    format: str = "fp8-e4m3"
    recipe: str | None = None
    weight_granularity: str = "per-channel"
    quantize_activations: bool = True
    op_types: tuple[str, ...] = WEIGHT_OP_TYPES
    activation_matmuls: bool = True
    extra_activation_op_types: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()
    activation_granularity: str = "per-tensor"
    calibration_method: str = "minmax"
    percentile: float = 99.999
    calibration_max_samples: int | None = None
    calibration_memory_mb: float = 1024.0
    int8_symmetric_activations: bool = False
    smooth_alpha: float | None = None
    fixed_ranges: bool = True
    accuracy_target: float | None = None
    accuracy_metric: str = "cosine"
    accuracy_samples: int = 8
    external_data: bool | None = None
    opset: int = 21
    progress: bool = False

    def __post_init__(self) -> None:
        self.op_types = tuple(self.op_types)
        self.extra_activation_op_types = tuple(self.extra_activation_op_types)
        self.exclude = tuple(self.exclude)
        self.exclude_op_types = tuple(self.exclude_op_types)

    @classmethod
    def from_recipe(cls, name: str, **overrides: object) -> QuantConfig:
        if name not in RECIPES:
            raise OnnxqError(f"unknown recipe '{name}'; choose from {', '.join(RECIPES)}")
        kw = dict(RECIPES[name])
        kw.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(kw) - known)
        if bad:
            raise OnnxqError(f"unknown QuantConfig field(s): {', '.join(bad)}")
        return cls(recipe=name, **kw)  # type: ignore[arg-type]

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise OnnxqError(f"unknown format '{self.format}'; choose from {', '.join(FORMATS)}")
        if self.activation_granularity not in ("per-tensor", "per-token"):
            raise OnnxqError(f"activation_granularity must be per-tensor or per-token, got "
                             f"'{self.activation_granularity}'")
        if self.weight_granularity not in ("per-channel", "per-tensor"):
            raise OnnxqError(f"weight_granularity must be per-channel or per-tensor, got '{self.weight_granularity}'")
        if self.calibration_method not in METHODS:
            raise OnnxqError(f"unknown calibration method '{self.calibration_method}'; "
                             f"choose from {', '.join(METHODS)}")
        if not 0 < self.percentile <= 100:
            raise OnnxqError(f"percentile must be in (0, 100], got {self.percentile}")
        if self.opset < 19:
            raise OnnxqError(f"opset {self.opset} is too old: FP8 Q/DQ and saturate need opset >= 19")
        if self.calibration_memory_mb <= 0:
            raise OnnxqError("calibration_memory_mb must be > 0")
        if self.calibration_max_samples is not None and self.calibration_max_samples < 1:
            raise OnnxqError("calibration_max_samples must be >= 1")
        if self.accuracy_metric not in ("cosine", "sqnr"):
            raise OnnxqError(f"accuracy_metric must be cosine or sqnr, got '{self.accuracy_metric}'")
        if self.accuracy_target is not None and self.accuracy_metric == "cosine" and not 0 < self.accuracy_target <= 1:
            raise OnnxqError(f"a cosine accuracy target must be in (0, 1], got {self.accuracy_target}")
        if self.smooth_alpha is not None and not 0 <= self.smooth_alpha < 1:
            raise OnnxqError(f"smooth_alpha must be in [0, 1) (0 or None: no smoothing), got {self.smooth_alpha}")
        if self.accuracy_samples < 1:
            raise OnnxqError("accuracy_samples must be >= 1")
        for pat in self.exclude:
            try:
                re.compile(pat)
            except re.error as e:
                raise OnnxqError(f"exclude pattern '{pat}' is not a valid regular expression: {e}") from e

    @property
    def scheme(self) -> Scheme:
        return SCHEMES[self.format]

    @property
    def weight_format(self) -> NumericFormat:
        return self.scheme.weights

    @property
    def activation_format(self) -> NumericFormat:
        # per-token scales are computed in the graph, symmetric (ZeroQuant): no zero point to compute
        symmetric = self.int8_symmetric_activations or self.activation_granularity == "per-token"
        return self.scheme.activation_format(symmetric)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("progress", None)
        return d


#: named recipes; every value is a QuantConfig default that command-line / keyword options override
RECIPES: dict[str, dict[str, object]] = {
    # transformers (FP8 study / ZeroQuant-HERO): FP8 E4M3 per-channel weights, FP8 activations into every
    # MatMul / Gemm including attention's activation x activation MatMuls; embedding tables FP8 too;
    # LayerNorm, Softmax, residual adds stay float
    "fp8-e4m3": {"format": "fp8-e4m3", "calibration_method": "minmax"},
    "fp8-e4m3-weight-only": {"format": "fp8-e4m3", "quantize_activations": False},
    "fp8-e5m2": {"format": "fp8-e5m2", "calibration_method": "minmax"},
    "fp8-e5m2-weight-only": {"format": "fp8-e5m2", "quantize_activations": False},
    # the FP8 study's wider coverage: also the inputs of the element-wise / normalisation ops
    "fp8-e4m3-wide": {"format": "fp8-e4m3", "calibration_method": "minmax",
                      "extra_activation_op_types": ("Add", "Mul", "Div", "Sub", "LayerNormalization")},
    # INT8: s8 per-channel weights x u8 per-tensor activations (onnxruntime's and the onnxq EP's fast path)
    # + SmoothQuant, alpha 0.8: BERT-base-size models have outlier input channels that per-tensor u8 cannot cover
    #   (all-mpnet-base-v2 mean cosine 0.925 without, 0.994 with 0.8; 0.2 and 0.5 made it worse: see
    #   docs/quantizer.md#smoothing-int8)
    "int8": {"format": "int8", "calibration_method": "percentile", "percentile": 99.999, "smooth_alpha": 0.8},
    # ZeroQuant: s8 per-channel weights x s8 per-token (per-row) activations whose scales are computed in the
    # graph at run time (blocked QuantizeLinear, opset 21): no calibration data needed; attention's activation x
    # activation MatMuls stay float
    "int8-per-token": {"format": "int8", "activation_granularity": "per-token", "activation_matmuls": False},
    "fp8-e4m3-per-token": {"format": "fp8-e4m3", "activation_granularity": "per-token", "activation_matmuls": False},
    # INT8 keeping attention's activation x activation MatMuls in float (they run in float on CPUs anyway)
    "int8-conservative": {"format": "int8", "calibration_method": "percentile", "activation_matmuls": False,
                          "smooth_alpha": 0.8},
}


@dataclass
class SparsifyConfig:
    """Block pruning and packing (``onnxq sparsify``, or ``onnxq quantize --sparsity``)."""

    sparsity: float = 0.9
    block: tuple[int, int] = (4, 1)
    scope: str = "per-layer"  # each layer to `sparsity`; "global": one threshold (may empty whole layers)
    exclude: tuple[str, ...] = ()
    op_types: tuple[str, ...] = ("MatMul", "Gemm")
    min_elements: int = 4096
    pack: bool = True
    min_pack_sparsity: float = 0.5  # pack a weight only if at least this share of its blocks is zero
    reconstruct: bool = False  # OBS / SparseGPT-style update of the kept weights from calibration data
    damp: float = 0.01  # reconstruction: share of the mean diagonal of X^T X added to its diagonal
    sequential: bool = True  # reconstruction: each layer sees the activations of the already-pruned earlier ones
    dense_target: bool = True  # reconstruction, sequential: fit the dense model's layer outputs, not W on X_pruned
    batch_rows: int = 128  # reconstruction: lazy batch along K (mask chosen per batch, a multiple of the block K)
    calibration_max_samples: int | None = None  # use at most this many feeds (None: all)
    calibration_memory_mb: float = 1024.0  # activation bytes one onnxruntime run may return
    progress: bool = False  # a progress bar on stderr during reconstruction

    def validate(self, has_data: bool) -> None:
        if self.reconstruct:
            if not has_data:
                raise OnnxqError("reconstruction needs calibration data: pass data= (an .npz keyed by input name, "
                                 "a directory of them or an iterable of feed dicts); on the command line --data "
                                 "calib.npz")
            if self.sparsity <= 0:
                raise OnnxqError("reconstruction needs sparsity > 0 (with sparsity 0 nothing is pruned)")
            if self.calibration_max_samples is not None and self.calibration_max_samples < 1:
                raise OnnxqError("calibration_max_samples must be >= 1")
            if self.calibration_memory_mb <= 0:
                raise OnnxqError("calibration_memory_mb must be > 0")


def parse_block(text: str) -> tuple[int, int]:
    k, sep, n = text.lower().partition("x")
    if not sep or not k.isdigit() or not n.isdigit() or int(k) < 1 or int(n) < 1:
        raise OnnxqError(f"block must be KxN with positive integers (for example 4x1), got '{text}'")
    return int(k), int(n)
