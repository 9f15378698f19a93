"""onnxq's exception types. Every error a user can cause says what went wrong and what to do about it."""


class OnnxqError(Exception):
    """Base class for errors onnxq reports to users (the CLI prints the message and exits non-zero)."""


class ModelLoadError(OnnxqError):
    """The model file cannot be read or is not a valid ONNX model."""


def onnxruntime_errors() -> tuple[type[BaseException], ...]:
    """onnxruntime's own exception classes (they derive from Exception directly), plus ValueError which its
    Python layer raises for bad feeds; used to turn them into one-line OnnxqErrors at the API boundary."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "EPFail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NoModel",
             "RuntimeException", "EngineError", "NotImplemented", "NotFound", "ModelLoaded")
    return tuple(getattr(state, n) for n in names if hasattr(state, n)) + (ValueError,)
