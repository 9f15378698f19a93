"""Which onnxq wrote a model: ``producer_name`` / ``producer_version`` say onnxq and its version (the input's own
producer is kept in ``metadata_props`` as ``onnxq.source_producer``), and ``onnxq.*`` metadata entries say what
was done."""

from __future__ import annotations

from collections.abc import Mapping

import onnx

from onnxq.core.version import __version__

PRODUCER = "onnxq"


def stamp(model: onnx.ModelProto, entries: Mapping[str, str]) -> None:
    """In place: the producer fields and ``onnxq.version`` plus ``entries`` (replacing earlier onnxq.* values)."""
    source = f"{model.producer_name} {model.producer_version}".strip()
    if model.producer_name != PRODUCER and source:
        entries = {"onnxq.source_producer": source, **entries}
    entries = {"onnxq.version": __version__, **entries}
    keep = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in entries.items():
        model.metadata_props.add(key=k, value=str(v))
    model.producer_name = PRODUCER
    model.producer_version = __version__
