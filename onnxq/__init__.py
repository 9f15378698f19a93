"""onnxq: an ONNX graph-rewriting quantizer and a fast CPU execution provider for ONNX Runtime."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("onnxq")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["QuantConfig", "SparsifyConfig", "__version__", "quantize", "sparsify"]


def __getattr__(name: str):  # lazy: `import onnxq` stays cheap (no onnxruntime / graphsurgeon import)
    if name in ("quantize", "QuantConfig"):
        import onnxq.quantizer as q

        return getattr(q, name)
    if name in ("sparsify", "SparsifyConfig"):
        import onnxq.sparse.api as s

        return getattr(s, name)
    raise AttributeError(f"module 'onnxq' has no attribute {name!r}")
