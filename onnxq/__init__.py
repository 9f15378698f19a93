"""onnxq: an ONNX graph-rewriting quantizer and a fast CPU execution provider for ONNX Runtime."""

from onnxq.core.version import __version__

__all__ = ["QuantConfig", "SparsifyConfig", "__version__", "quantize", "sparsify"]


def __getattr__(name: str):  # lazy: `import onnxq` stays cheap (no onnxruntime / graphsurgeon import)
    if name in ("QuantConfig", "SparsifyConfig"):
        import onnxq.core.config as c

        return getattr(c, name)
    if name in ("quantize", "sparsify"):
        import onnxq.pipeline.api as a

        return getattr(a, name)
    raise AttributeError(f"module 'onnxq' has no attribute {name!r}")
