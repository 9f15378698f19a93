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


# ------------------------------------------------------------------------------------------ ISA levels
# Modules marked `pytestmark = pytest.mark.every_isa` run each test once per ISA level (onnxq.cpu.ISA_LEVELS) with
# ONNXQ_MAX_ISA set to it, so an AVX-512 machine also proves the AVX2 and scalar paths. Levels this CPU lacks
# (or that an outer ONNXQ_MAX_ISA excludes) are skipped with the reason, never passed.

import pytest  # noqa: E402

from onnxq.cpu import ISA_ENV, ISA_LEVELS  # noqa: E402

_OUTER_CEILING = os.environ.get(ISA_ENV) or None


def pytest_configure(config):
    config.addinivalue_line("markers", "every_isa: run the test once per ISA level (ONNXQ_MAX_ISA), skip those the "
                                       "CPU lacks")


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("every_isa") is not None:
        metafunc.parametrize("isa_level", ISA_LEVELS, indirect=True, ids=[f"isa-{x}" for x in ISA_LEVELS])


def _detected_level() -> str:
    from onnxq import _kernels

    return _kernels.detected_isa_level()


@pytest.fixture(autouse=True)
def isa_level(request, monkeypatch):
    """The ISA ceiling this test runs under (None: not parametrized, the process's own)."""
    level = getattr(request, "param", None)
    if level is None:
        return None
    top = _detected_level()
    if ISA_LEVELS.index(level) > ISA_LEVELS.index(top):
        pytest.skip(f"this CPU's highest ISA level is {top}, below {level}")
    if _OUTER_CEILING is not None and ISA_LEVELS.index(level) > ISA_LEVELS.index(_OUTER_CEILING):
        pytest.skip(f"{ISA_ENV}={_OUTER_CEILING} caps this run below {level}")
    monkeypatch.setenv(ISA_ENV, level)
    return level



@pytest.fixture
def fp8_kernel_everywhere(isa_level, monkeypatch):
    """Where no vector FP8 kernel runs (scalar level) the EP leaves FP8 to onnxruntime; force the reference kernel
    so FP8 tests still exercise the EP there."""
    from onnxq import _kernels

    if len(_kernels.fp8_gemm_kernels()) == 1:
        monkeypatch.setenv("ONNXQ_FP8_KERNEL", "ref")
