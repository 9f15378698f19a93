"""onnxq: an ONNX graph-rewriting quantizer and a fast CPU execution provider for ONNX Runtime."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("onnxq")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
