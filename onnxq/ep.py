"""The onnxq execution provider from Python: find the library, register it with onnxruntime, open sessions.

    import onnxq.ep
    sess = onnxq.ep.session("model.q.onnx")          # onnxq EP first, CPU provider second
    sess.get_provider_graph_assignment_info()        # what the onnxq EP claimed
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

import onnxruntime as ort

from onnxq.core.errors import OnnxqError
from onnxq.plugin import EP_NAME, LIBRARY_ENV, LIBRARY_FILE, check_onnxruntime_version, get_library_path

__all__ = ["EP_NAME", "LIBRARY_ENV", "LIBRARY_FILE", "REGISTRATION_NAME", "assigned_nodes", "ep_devices",
           "library_path", "measuring_session", "register", "session", "session_options"]

REGISTRATION_NAME = "onnxq"

_lock = threading.Lock()
_registered_path: str | None = None


def library_path() -> str:
    """Absolute path of the onnxq EP shared library (``$ONNXQ_EP_LIBRARY`` overrides)."""
    return get_library_path()


def register() -> str:
    """Register the onnxq EP library with onnxruntime (idempotent) and return the EP's name."""
    global _registered_path
    with _lock:
        if _registered_path is None:
            check_onnxruntime_version(ort.__version__)
            if not hasattr(ort, "register_execution_provider_library"):
                raise OnnxqError(f"onnxruntime {ort.__version__} cannot load plugin execution providers; "
                                 "pip install 'onnxruntime>=1.29'")
            path = library_path()
            if not any(d.ep_name == EP_NAME for d in ort.get_ep_devices()):
                try:
                    ort.register_execution_provider_library(REGISTRATION_NAME, path)
                except Exception as e:  # onnxruntime raises its own exception types
                    raise OnnxqError(f"onnxruntime could not load the onnxq EP from {path}: {e}") from e
            _registered_path = path
    return EP_NAME


def ep_devices() -> list[Any]:
    """The ``OrtEpDevice`` objects onnxruntime lists for the onnxq EP (registers it first)."""
    register()
    return [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]


def _config_entry(so: ort.SessionOptions, key: str) -> str | None:
    try:
        return so.get_session_config_entry(key)
    except Exception:  # onnxruntime raises when the key was never set
        return None


_MARKER = "onnxq.ep_added"


def session_options(
    base: ort.SessionOptions | None = None, provider_options: Mapping[str, str] | None = None
) -> ort.SessionOptions:
    """Session options with the onnxq EP added first; onnxruntime's CPU provider takes everything else.

    `base` is modified in place (onnxruntime's options cannot be copied) and may be passed again: the EP is
    added once. Unless the caller chose otherwise, onnxruntime's own intra-op threads are told not to spin
    while idle: the EP does the heavy work on its own pool, and spinning threads would take its cores.
    """
    if base is None:
        so = ort.SessionOptions()
        so.log_severity_level = 3  # errors only: ORT's "not all nodes on the preferred EP" warning is expected
    else:
        so = base
    if _config_entry(so, _MARKER) == "1":
        return so
    # Lets get_provider_graph_assignment_info() report what the onnxq EP claimed.
    so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    if _config_entry(so, "session.intra_op.allow_spinning") is None:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    devices = ep_devices()
    if not devices:
        raise OnnxqError("onnxruntime lists no device for the onnxq EP")
    opts = dict(provider_options or {})
    if "num_threads" not in opts and so.intra_op_num_threads > 0:
        # the EP owns its pool; by default it follows the session's intra-op setting
        opts["num_threads"] = str(so.intra_op_num_threads)
    so.add_provider_for_devices(devices[:1], opts)
    so.add_session_config_entry(_MARKER, "1")
    return so


def session(
    model: str | os.PathLike[str] | bytes,
    options: ort.SessionOptions | None = None,
    provider_options: Mapping[str, str] | None = None,
) -> ort.InferenceSession:
    """An ``onnxruntime.InferenceSession`` with the onnxq EP first and the CPU provider second."""
    so = session_options(options, provider_options)
    src = model if isinstance(model, bytes) else os.fspath(model)
    # enable_fallback=0: on an EP error onnxruntime's Python layer would print to stdout and rebuild the session
    # on the CPU provider alone, in the middle of Run() calls other threads may be making; report errors instead
    return ort.InferenceSession(src, sess_options=so, enable_fallback=0)


def assigned_nodes(sess: ort.InferenceSession) -> dict[str, list[str]]:
    """Node names (``op_type:name``) per execution provider, from ``get_provider_graph_assignment_info``."""
    out: dict[str, list[str]] = {}
    for sub in sess.get_provider_graph_assignment_info():
        nodes = out.setdefault(sub.ep_name, [])
        for n in sub.get_nodes():
            nodes.append(f"{_text(n, 'op_type')}:{_text(n, 'name')}")
    return out


def _text(obj: Any, attr: str) -> str:
    """A string onnxruntime returns from the model; a file can hold names that are not UTF-8 (found by the fuzzer:
    the conversion to str raised, and `onnxq run` / `inspect` printed a traceback)."""
    try:
        return str(getattr(obj, attr))
    except UnicodeDecodeError:
        return "<not UTF-8>"


def measuring_session(model: str | os.PathLike[str] | bytes, *, use_ep: bool = True,
                      threads: int = 0) -> tuple[ort.InferenceSession, str]:
    """A session that measures a quantized model the way users run it, and a label naming what ran it.

    With ``use_ep`` the onnxq EP runs what it claims (its integer kernels are exact on every CPU) and stock
    onnxruntime the rest; without it, or where the EP cannot load, stock onnxruntime runs everything — whose INT8
    results depend on the CPU: its AVX2 u8s8 kernel saturates 16-bit pair sums (``vpmaddubsw``), so on AVX2-only
    CPUs it adds error the quantized model itself does not have.
    """
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    src = model if isinstance(model, bytes) else os.fspath(model)
    if use_ep:
        try:
            from onnxq.cpu import isa_level

            sess = session(src, so)
            return sess, f"onnxq EP (ISA level {isa_level()}) + onnxruntime CPU"
        except (OnnxqError, ImportError):
            so = ort.SessionOptions()
            so.log_severity_level = 3
            if threads:
                so.intra_op_num_threads = threads
    return (ort.InferenceSession(src, sess_options=so, providers=["CPUExecutionProvider"]),
            f"onnxruntime {ort.__version__} CPU")
