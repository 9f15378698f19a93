"""The quantizer: FP8 (E4M3FN / E5M2) and INT8 Q/DQ insertion with streaming calibration.

    import onnxq
    report = onnxq.quantize("model.onnx", "model.fp8.onnx", onnxq.QuantConfig.from_recipe("fp8-e4m3"),
                            calibration_data="calib_dir/")
"""

from onnxq.quantizer.api import quantize
from onnxq.quantizer.config import FORMATS, RECIPES, QuantConfig
from onnxq.quantizer.pipeline import QuantReport

__all__ = ["FORMATS", "RECIPES", "QuantConfig", "QuantReport", "quantize"]
