"""`onnxq inspect`: what a model holds (ops, initializer bytes by dtype, opsets) and what the onnxq EP claims."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx

from onnxq.core.model_io import load_model


@dataclass
class InitializerStats:
    count: int = 0
    elements: int = 0
    bytes: int = 0


@dataclass
class ModelReport:
    path: str
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    op_counts: dict[str, int]
    initializers: dict[str, InitializerStats]
    ep_claims: dict[str, list[str]] = field(default_factory=dict)
    ep_error: str | None = None
    ep_checked: bool = False
    isa_level: str = ""  # the level the EP's kernels were chosen at (onnxq.cpu)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _value_info(v: onnx.ValueInfoProto) -> dict[str, Any]:
    t = v.type.tensor_type
    dims: list[int | str] = []
    for d in t.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return {"name": v.name, "dtype": onnx.TensorProto.DataType.Name(t.elem_type), "shape": dims}


def _tensor_bytes(t: onnx.TensorProto) -> tuple[int, int]:
    n = int(np.prod(t.dims)) if len(t.dims) else 1
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        itemsize = 0
    if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return n, (n + 1) // 2
    return n, n * itemsize


def _all_ops(graph: onnx.GraphProto, counts: Counter[str]) -> None:
    for node in graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counts[key] += 1
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _all_ops(attr.g, counts)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _all_ops(g, counts)


def inspect_model(path: str | os.PathLike[str], *, with_ep: bool = True) -> ModelReport:
    model = load_model(path, load_external_data=False)
    counts: Counter[str] = Counter()
    _all_ops(model.graph, counts)
    inits: dict[str, InitializerStats] = {}
    for t in model.graph.initializer:
        name = onnx.TensorProto.DataType.Name(t.data_type)
        s = inits.setdefault(name, InitializerStats())
        n, b = _tensor_bytes(t)
        s.count += 1
        s.elements += n
        s.bytes += b
    report = ModelReport(
        path=str(path),
        ir_version=model.ir_version,
        opsets={(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=[_value_info(v) for v in model.graph.input if v.name not in {t.name for t in model.graph.initializer}],
        outputs=[_value_info(v) for v in model.graph.output],
        op_counts=dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        initializers=dict(sorted(inits.items(), key=lambda kv: -kv[1].bytes)),
    )
    if with_ep:
        report.ep_checked = True
        try:
            from onnxq import ep
            from onnxq.cpu import cpu_label

            report.isa_level = cpu_label()
            sess = ep.session(os.fspath(path))
            report.ep_claims = ep.assigned_nodes(sess)
        except Exception as e:  # a model the EP session rejects is still worth inspecting
            report.ep_error = str(e).strip().splitlines()[0][:500]
    return report


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def format_report(r: ModelReport) -> str:
    opsets = ", ".join(f"{d} {v}" for d, v in r.opsets.items())
    lines = [f"model      {r.path}", f"ir/opsets  ir {r.ir_version}; {opsets}"]
    if r.producer:
        lines.append(f"producer   {r.producer}")
    for label, vals in (("inputs", r.inputs), ("outputs", r.outputs)):
        for i, v in enumerate(vals):
            shape = "[" + ", ".join(str(d) for d in v["shape"]) + "]"
            lines.append(f"{label if i == 0 else '':<10} {v['name']}: {v['dtype'].lower()} {shape}")
    total_nodes = sum(r.op_counts.values())
    lines.append(f"ops        {total_nodes} nodes: " + ", ".join(f"{k} {v}" for k, v in r.op_counts.items()))
    total = sum(s.bytes for s in r.initializers.values())
    n_inits = sum(s.count for s in r.initializers.values())
    lines.append(f"weights    {_human_bytes(total)} in {n_inits} initializers")
    for name, s in r.initializers.items():
        lines.append(
            f"{'':<10} {name.lower():<16} {s.count:>5} tensors {s.elements:>12,} values {_human_bytes(s.bytes):>10}"
        )
    if not r.ep_checked:
        lines.append("onnxq EP   not checked (--no-ep)")
    elif r.ep_error:
        lines.append(f"onnxq EP   could not open a session: {r.ep_error}")
    else:
        from onnxq.ep import EP_NAME

        claimed = r.ep_claims.get(EP_NAME, [])
        others = {k: len(v) for k, v in r.ep_claims.items() if k != EP_NAME}
        lines.append(
            f"onnxq EP   claims {len(claimed)} of {sum(len(v) for v in r.ep_claims.values())} nodes"
            + (" (" + ", ".join(f"{k}: {v}" for k, v in others.items()) + ")" if others else "")
        )
        if r.isa_level:
            lines.append(f"{'':<10} on {r.isa_level}")
        by_op = Counter(n.split(":", 1)[0] for n in claimed)
        if by_op:
            lines.append(f"{'':<10} " + ", ".join(f"{k} {v}" for k, v in sorted(by_op.items())))
    return "\n".join(lines)
