"""ONNX Runtime's plugin-EP package conventions: where the EP library is and what the EP is called, without
importing onnxruntime (a C, C++, C# or Java host only needs the path and the name).

    import onnxq
    onnxq.get_library_path()   # absolute path of libonnxq_ep.so, for RegisterExecutionProviderLibrary
    onnxq.get_ep_names()       # ["OnnxqExecutionProvider"], to pick the OrtEpDevice for AppendExecutionProvider_V2

The wheel bundles nothing of onnxruntime: the host's onnxruntime (>= 1.29) loads the library.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from onnxq.core.errors import OnnxqError

EP_NAME = "OnnxqExecutionProvider"
LIBRARY_FILE = "libonnxq_ep.so"
LIBRARY_ENV = "ONNXQ_EP_LIBRARY"
#: the EP is built against ORT API 29; the onnxruntime releases it was checked with (docs/compatibility.md)
MIN_ONNXRUNTIME = (1, 29)
CHECKED_ONNXRUNTIME = ("1.29.0", "1.30.0", "1.31.1", "1.32.0")


def get_library_path() -> str:
    """Absolute path of the onnxq EP shared library (``$ONNXQ_EP_LIBRARY`` overrides)."""
    override = os.environ.get(LIBRARY_ENV)
    if override:
        if not Path(override).is_file():
            raise OnnxqError(f"{LIBRARY_ENV}={override} is not a file")
        return str(Path(override).resolve())
    candidates = [Path(__file__).parent / "lib" / LIBRARY_FILE]
    # Editable installs put compiled files beside the compiled _kernels module, not beside this file.
    spec = importlib.util.find_spec("onnxq._kernels")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "lib" / LIBRARY_FILE)
    for c in candidates:
        if c.is_file():
            return str(c.resolve())
    raise OnnxqError(
        f"the onnxq EP library ({LIBRARY_FILE}) is not installed; reinstall onnxq (`pip install onnxq`, or "
        f"`pip install .` from the source tree), or set {LIBRARY_ENV}"
    )


def get_ep_names() -> list[str]:
    """The execution providers the library's factory creates (one: the CPU EP)."""
    return [EP_NAME]


def get_ep_name() -> str:
    return EP_NAME


def parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split("+")[0].split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_onnxruntime_version(version: str) -> None:
    """One clear line for an onnxruntime too old to load a plugin EP built against API 29."""
    if parse_version(version)[:2] < MIN_ONNXRUNTIME:
        lo = ".".join(map(str, MIN_ONNXRUNTIME))
        raise OnnxqError(f"the onnxq EP needs onnxruntime >= {lo} (checked: {', '.join(CHECKED_ONNXRUNTIME)}); "
                         f"this environment has onnxruntime {version}: pip install 'onnxruntime>={lo}'")
