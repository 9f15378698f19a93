"""The model zoo: export many models, apply recipes, evaluate and benchmark them in one command.

    onnxq zoo list
    onnxq zoo run --models ci --recipes int8 fp8-e4m3 --out zoo-out --jobs 2

Modules: ``registry`` (model entries), ``recipes`` (zoo recipes: quantization and block-sparse variants),
``data`` (offline evaluation data), ``tasks`` (metrics per task), ``pipeline`` (export -> convert -> evaluate ->
benchmark with a per-step manifest), ``executors`` (serial, process pool, Ray), ``report`` (markdown, JSON, PNG).
"""

from __future__ import annotations

from onnxq.apps.zoo.pipeline import ZooSettings, run_zoo

__all__ = ["ZooSettings", "run_zoo"]
