"""Run a model with extra outputs (intermediate tensors) through stock onnxruntime's CPU provider, in groups
sized so one ``run`` never returns more than a byte budget — the outputs for one batch need not fit in memory
at once. The session is built from bytes in memory; a model with over 256 MiB of weights (or over protobuf's 2 GiB)
goes through a private temporary directory (removed afterwards; never the current directory), its weights written
straight from the model, so the model is never copied or serialized whole."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from onnxq.core.errors import OnnxqError, onnxruntime_errors
from onnxq.core.model_io import restore_large_initializers, save_skeleton, split_large_initializers

_PROTOBUF_LIMIT = 2**31 - 1
_IN_MEMORY_LIMIT = 256 << 20  # models with more weight bytes reach onnxruntime through a private temporary file


class TensorRunner:
    def __init__(self, model: onnx.ModelProto, names: Sequence[str], *, memory_mb: float = 1024.0,
                 threads: int = 0) -> None:
        self.inputs = {i.name for i in model.graph.input}
        inits = {t.name for t in model.graph.initializer}
        self.names = [n for n in dict.fromkeys(names) if n not in inits]
        self.budget = max(1, int(memory_mb * 2**20))
        self.sizes: dict[str, int] = {}
        self._shapes = _static_numel(model)
        aug, large = split_large_initializers(model)  # the weights are not copied: see below
        outs = {o.name for o in aug.graph.output}
        for n in self.names:
            if n not in outs and n not in self.inputs:
                aug.graph.output.append(helper.make_empty_tensor_value_info(n))
        self.model_outputs = [o.name for o in model.graph.output]
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        self._tmp: str | None = None
        try:
            if aug.ByteSize() + sum(t.ByteSize() for t in large.values()) < min(_PROTOBUF_LIMIT, _IN_MEMORY_LIMIT):
                restore_large_initializers(aug, large)
                self.sess = ort.InferenceSession(aug.SerializeToString(), sess_options=so,
                                                 providers=["CPUExecutionProvider"])
            else:  # large: the weights go straight from the model to a file (no copy of the model, no bytes of it)
                self._tmp = tempfile.mkdtemp(prefix="onnxq-calib-")
                path = save_skeleton(aug, large, self._tmp)
                self.sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        except onnxruntime_errors() as e:
            self.close()
            raise OnnxqError(f"onnxruntime cannot load the model: {str(e).strip().splitlines()[0]}") from e

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> TensorRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _estimate(self, name: str, feed: Mapping[str, np.ndarray]) -> int:
        if name in self.sizes:
            return self.sizes[name]
        numel = self._shapes.get(name)
        if numel is None:
            return max((int(v.nbytes) for v in feed.values()), default=4) * 64  # unknown: a generous guess
        return numel(feed) * 4

    def groups(self, names: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[list[str]]:
        groups: list[list[str]] = []
        cur: list[str] = []
        total = 0
        for n in names:
            b = self._estimate(n, feed)
            if cur and total + b > self.budget:
                groups.append(cur)
                cur, total = [], 0
            cur.append(n)
            total += b
        if cur:
            groups.append(cur)
        return groups

    def run(self, names: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        fetch = [n for n in names if n not in self.inputs]
        try:
            got = self.sess.run(fetch, dict(feed)) if fetch else []
        except onnxruntime_errors() as e:
            raise OnnxqError(f"onnxruntime: {str(e).strip().splitlines()[0]}") from e
        by = dict(zip(fetch, got, strict=True))
        out = []
        for n in names:
            v = by[n] if n in by else np.asarray(feed[n])
            self.sizes[n] = int(getattr(v, "nbytes", 0))
            out.append(v)
        return out

    def iterate(self, feed: Mapping[str, np.ndarray], names: Sequence[str] | None = None
                ) -> Iterator[tuple[str, np.ndarray]]:
        """Every requested tensor for one feed, a group of runs at a time."""
        for group in self.groups(list(names if names is not None else self.names), feed):
            vals = self.run(group, feed)
            yield from zip(group, vals, strict=True)
            del vals


def _static_numel(model: onnx.ModelProto):  # type: ignore[no-untyped-def]
    """name -> function(feed) -> element count, for tensors whose dims are numbers or input dim names."""
    dim_src: dict[str, tuple[str, int]] = {}
    for i in model.graph.input:
        for k, d in enumerate(i.type.tensor_type.shape.dim):
            if d.dim_param:
                dim_src.setdefault(d.dim_param, (i.name, k))
    out = {}
    for vi in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        parts: list[int | tuple[str, int]] = []
        ok = True
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                parts.append(d.dim_value)
            elif d.dim_param in dim_src:
                parts.append(dim_src[d.dim_param])
            else:
                ok = False
                break
        if ok:
            out[vi.name] = _numel_fn(parts)
    return out


def _numel_fn(parts: list):  # type: ignore[no-untyped-def]
    def numel(feed: Mapping[str, np.ndarray]) -> int:
        return math.prod(p if isinstance(p, int) else int(np.shape(feed[p[0]])[p[1]]) if p[0] in feed else 1
                         for p in parts)

    return numel
