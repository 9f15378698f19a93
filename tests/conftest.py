"""Suite-wide hooks.

``ONNXQ_KERNELS_PATH=/path/to/_kernels.cpython-*.so`` makes ``onnxq._kernels`` that file instead of the installed
one, whatever the install mode (regular or editable): tools/run_sanitized_tests.sh points it, and
``ONNXQ_EP_LIBRARY``, at an AddressSanitizer + UBSan build.
"""

from __future__ import annotations

import importlib.util
import os
import sys

_override = os.environ.get("ONNXQ_KERNELS_PATH")
if _override:
    import onnxq

    _spec = importlib.util.spec_from_file_location("onnxq._kernels", _override)
    if _spec is None or _spec.loader is None:
        raise RuntimeError(f"ONNXQ_KERNELS_PATH={_override} is not a loadable extension module")
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    sys.modules["onnxq._kernels"] = _mod
    onnxq._kernels = _mod  # type: ignore[attr-defined]
