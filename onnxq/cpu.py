"""What CPU this process runs on and which ISA level the onnxq kernels use on it.

The EP and the kernel module pick kernels at run time from the CPU's features, capped by an ISA ceiling:
``$ONNXQ_MAX_ISA`` for the whole process (tests, benchmarks) or the EP's ``max_isa`` provider option for one
session. Levels, lowest first: ``scalar`` (references only), ``avx2`` (AVX2 + FMA + F16C), ``avx512``
(F/BW/VL), ``avx512vnni``, ``avx512bf16`` (+ VBMI), ``amx``.
"""

from __future__ import annotations

import platform
from functools import cache
from typing import Any

ISA_ENV = "ONNXQ_MAX_ISA"
ISA_LEVELS = ("scalar", "avx2", "avx512", "avx512vnni", "avx512bf16", "amx")


@cache
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def isa_level() -> str:
    """The level kernels are chosen at in this process: the CPU's highest, capped by $ONNXQ_MAX_ISA."""
    from onnxq import _kernels

    return _kernels.isa_level()


def detected_isa_level() -> str:
    """The highest level this CPU supports."""
    from onnxq import _kernels

    return _kernels.detected_isa_level()


def isa_at_least(level: str) -> bool:
    """Whether kernels of `level` may run now: the CPU has the level and the current ceiling allows it."""
    return ISA_LEVELS.index(isa_level()) >= ISA_LEVELS.index(level)


@cache
def onnxruntime_int8_saturates() -> bool:
    """Whether stock onnxruntime's u8 x s8 MatMul saturates 16-bit pair sums on this CPU — its AVX2 kernel multiplies
    with vpmaddubsw, whose int16 sum of two products overflows at 2 * 255 * 127; its VNNI / AMX kernels are exact.
    Decided by a probe, not the CPU's name: 255 x 127 over K = 64 is 2,072,640 exactly, 1,048,544 saturated."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    k = 64
    g = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "probe",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])],
        initializer=[helper.make_tensor("b", TensorProto.INT8, [k, 1], [127] * k)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    y = int(s.run(None, {"a": np.full((1, k), 255, np.uint8)})[0][0, 0])
    return y != 255 * 127 * k


def cpu_info() -> dict[str, Any]:
    """CPU model, detected and active ISA level and the features kernels may use (benchmarks record this)."""
    from onnxq import _kernels

    return {
        "model": cpu_model(),
        "isa_level": _kernels.isa_level(),
        "detected_isa_level": _kernels.detected_isa_level(),
        "features": _kernels.cpu_features(),
        "logical_cpus": _logical_cpus(),
    }


def cpu_label(info: dict[str, Any] | None = None) -> str:
    """One line for table headers: "AMD EPYC (2 CPUs), ISA level avx2 of avx512bf16"."""
    i = info or cpu_info()
    level = i["isa_level"]
    if level != i["detected_isa_level"]:
        level = f"{level} (capped; CPU has {i['detected_isa_level']})"
    return f"{i['model']} ({i['logical_cpus']} CPUs), ISA level {level}"


def _logical_cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
