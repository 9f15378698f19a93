"""onnxq: an ONNX graph-rewriting quantizer and a fast CPU execution provider for ONNX Runtime."""

from onnxq.core.version import __version__

__all__ = ["QuantConfig", "SparsifyConfig", "__version__", "get_ep_name", "get_ep_names", "get_library_path",
           "quantize", "sparsify"]


def __getattr__(name: str):  # lazy: `import onnxq` stays cheap (no onnxruntime / graphsurgeon import)
    if name in ("QuantConfig", "SparsifyConfig"):
        import onnxq.core.config as c

        return getattr(c, name)
    if name in ("get_library_path", "get_ep_names", "get_ep_name"):  # ONNX Runtime's plugin-EP package conventions
        import onnxq.plugin as p

        return getattr(p, name)
    if name in ("quantize", "sparsify"):
        import onnxq.pipeline.api as a

        return getattr(a, name)
    raise AttributeError(f"module 'onnxq' has no attribute {name!r}")
