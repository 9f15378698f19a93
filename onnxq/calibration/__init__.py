"""Calibration: streaming histograms of activations and the range-selection methods computed from them."""

from onnxq.calibration.histogram import StreamingHistogram
from onnxq.calibration.methods import METHODS, select_range

__all__ = ["METHODS", "StreamingHistogram", "select_range"]
