"""Calibration / evaluation data: ``.npz`` files (one feed dict per file, arrays keyed by input name), or any
iterable of feed dicts; validated against the model's inputs with one-line, actionable errors."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxq.core.errors import OnnxqError

DataSource = str | os.PathLike[str] | Iterable[Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...] | None


def model_inputs(model: onnx.ModelProto) -> list[InputSpec]:
    inits = {t.name for t in model.graph.initializer}
    out = []
    for i in model.graph.input:
        if i.name in inits:
            continue
        tt = i.type.tensor_type
        try:
            dt = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except Exception:
            dt = np.dtype(object)
        shape = None
        if tt.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
        out.append(InputSpec(i.name, dt, shape))
    return out


def npz_files(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """A directory (its *.npz, sorted), one .npz file, or a list of .npz files."""
    if isinstance(source, str | os.PathLike):
        p = Path(source)
        if not p.exists():
            raise OnnxqError(f"{p}: no such file or directory (calibration data: a .npz file or a directory of them)")
        if p.is_dir():
            files = sorted(p.glob("*.npz"))
            if not files:
                raise OnnxqError(f"{p}: directory holds no .npz files (one feed dict per file, arrays keyed by "
                                 "input name)")
            return files
        return [p]
    return [Path(f) for f in source]


def load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise OnnxqError(f"{path}: cannot read calibration data ({e}); expected an .npz keyed by input name") from e
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise OnnxqError(f"{path}: is a single array; expected an .npz keyed by input name")
    with data:
        try:
            return {k: data[k] for k in data.files}
        except Exception as e:  # zip members can be truncated
            raise OnnxqError(f"{path}: damaged .npz ({e})") from e


def iter_feeds(source: DataSource) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(label, feed) pairs, lazily: files are read one at a time."""
    if isinstance(source, str | os.PathLike):
        for f in npz_files(source):
            yield str(f), load_npz(f)
        return
    if isinstance(source, Mapping):
        yield "sample 0", source
        return
    try:
        it = iter(source)
    except TypeError as e:
        raise OnnxqError(f"calibration data must be a path, a list of .npz paths or an iterable of feed dicts, "
                         f"got {type(source).__name__}") from e
    for i, item in enumerate(it):
        if isinstance(item, str | os.PathLike):
            yield str(item), load_npz(Path(item))
        else:
            yield f"sample {i}", item


def load_feeds(model: onnx.ModelProto, source: DataSource, max_samples: int | None) -> list[dict[str, np.ndarray]]:
    """Validated feeds, kept in memory (for passes that iterate over them more than once)."""
    inputs = model_inputs(model)
    feeds = []
    for label, raw in iter_feeds(source):
        if max_samples is not None and len(feeds) >= max_samples:
            break
        feeds.append(validate_feed(label, raw, inputs))
    if not feeds:
        raise OnnxqError("calibration data is empty: give at least one feed (an .npz keyed by input name)")
    return feeds


def validate_feed(label: str, feed: Any, inputs: list[InputSpec]) -> dict[str, np.ndarray]:
    if not isinstance(feed, Mapping):
        raise OnnxqError(f"{label}: is a {type(feed).__name__}, expected a dict of input name -> array")
    want = {i.name for i in inputs}
    missing = sorted(want - set(feed))
    if missing:
        raise OnnxqError(f"{label}: missing input(s) {missing}; the model's inputs are {sorted(want)}, "
                         f"the data has {sorted(feed)}")
    extra = sorted(set(feed) - want)
    if extra:
        raise OnnxqError(f"{label}: unknown input name(s) {extra}; the model's inputs are {sorted(want)}")
    out = {}
    for spec in inputs:
        arr = np.asarray(feed[spec.name])
        if spec.dtype != np.dtype(object) and arr.dtype != spec.dtype:
            raise OnnxqError(f"{label}: input '{spec.name}' is {arr.dtype}, the model wants {spec.dtype} "
                             f"(convert it with .astype(np.{spec.dtype.name}))")
        if arr.size == 0:
            raise OnnxqError(f"{label}: input '{spec.name}' is empty (shape {arr.shape})")
        if spec.shape is not None:
            if arr.ndim != len(spec.shape):
                raise OnnxqError(f"{label}: input '{spec.name}' has {arr.ndim} dims {arr.shape}, the model wants "
                                 f"{len(spec.shape)} ({_fmt_shape(spec.shape)})")
            for k, (d, s) in enumerate(zip(arr.shape, spec.shape, strict=True)):
                if isinstance(s, int) and s > 0 and d != s:
                    raise OnnxqError(f"{label}: input '{spec.name}' dim {k} is {d}, the model wants {s} "
                                     f"({_fmt_shape(spec.shape)})")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise OnnxqError(f"{label}: input '{spec.name}' holds {bad} NaN/infinite value(s); calibration data "
                             "must be finite")
        out[spec.name] = arr
    return out


def _fmt_shape(shape: tuple) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def synthetic_feeds(inputs: list[InputSpec], count: int, dims: Mapping[str, int] | None = None,
                    seed: int = 0) -> list[dict[str, np.ndarray]]:
    """SYNTHETIC inputs (for speed work only — never for an accuracy claim): floats standard normal, integer
    and bool inputs all 1 (a valid token id / attention mask for any vocabulary), symbolic dims from ``dims``
    (default 1 for the first, 16 otherwise)."""
    rng = np.random.default_rng(seed)
    dims = dict(dims or {})
    feeds = []
    for _ in range(count):
        f = {}
        for spec in inputs:
            shape = []
            for k, d in enumerate(spec.shape or ()):
                if isinstance(d, int) and d > 0:
                    shape.append(d)
                else:
                    shape.append(int(dims.get(str(d), dims.get("*", 1 if k == 0 else 16))))
            if np.issubdtype(spec.dtype, np.floating):
                f[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
            else:
                f[spec.name] = np.ones(shape, spec.dtype)
        feeds.append(f)
    return feeds
