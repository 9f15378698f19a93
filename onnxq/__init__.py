"""onnxq: an ONNX graph-rewriting quantizer and a fast CPU execution provider for ONNX Runtime."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("onnxq")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["QuantConfig", "SparsifyConfig", "__version__", "quantize", "sparsify"]


def __getattr__(name: str):  # lazy: `import onnxq` stays cheap (no onnxruntime / graphsurgeon import)
    if name in ("QuantConfig", "SparsifyConfig"):
        import onnxq.core.config as c

        return getattr(c, name)
    if name in ("quantize", "sparsify"):
        import onnxq.pipeline.api as a

        return getattr(a, name)
    raise AttributeError(f"module 'onnxq' has no attribute {name!r}")
