"""The quantizer: FP8 (E4M3FN / E5M2) and INT8 Q/DQ insertion with streaming calibration.

    import onnxq
    report = onnxq.quantize("model.onnx", "model.fp8.onnx", onnxq.QuantConfig.from_recipe("fp8-e4m3"),
                            calibration_data="calib_dir/")

Modules: ``config`` (QuantConfig, recipes), ``numerics`` (Q/DQ arithmetic), ``pipeline`` (the one pipeline),
``accuracy`` (accuracy-target fallback), ``api`` (``quantize``).
"""

from onnxq.quantizer.config import FORMATS, RECIPES, QuantConfig

__all__ = ["FORMATS", "RECIPES", "QuantConfig", "QuantReport", "quantize"]


def __getattr__(name: str):  # the pipeline imports the passes, which import config: keep this lazy
    if name == "quantize":
        from onnxq.quantizer.api import quantize

        return quantize
    if name == "QuantReport":
        from onnxq.quantizer.pipeline import QuantReport

        return QuantReport
    raise AttributeError(f"module 'onnxq.quantizer' has no attribute {name!r}")
