"""onnxq's exception types. Every error a user can cause says what went wrong and what to do about it."""


class OnnxqError(Exception):
    """Base class for errors onnxq reports to users (the CLI prints the message and exits non-zero)."""


class ModelLoadError(OnnxqError):
    """The model file cannot be read or is not a valid ONNX model."""
