"""Reading and writing models safely: clear errors for bad files, atomic writes, inputs never modified; and the
large-initializer skeletons (split, restore, save) every step that hands a big model to onnx or onnxruntime uses."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from google.protobuf.message import Error as ProtobufError
from onnx import numpy_helper

from onnxq.core.atomic_write import set_default_mode
from onnxq.core.errors import ModelLoadError, OnnxqError

# Protobuf cannot serialize a message of 2 GiB or more; larger models keep their tensors in external data.
_PROTOBUF_LIMIT = 2**31 - 1


def load_model(path: str | os.PathLike[str], *, load_external_data: bool = True) -> onnx.ModelProto:
    """Load an ONNX model, turning every way a file can be wrong into a ModelLoadError that says so."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{p}: no such file")
    if p.is_dir():
        raise ModelLoadError(f"{p}: is a directory, expected an .onnx file")
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            head = f.read(1)
    except OSError as e:
        raise ModelLoadError(f"{p}: cannot read: {e.strerror}") from e
    if size == 0 or not head:
        raise ModelLoadError(f"{p}: empty file, not an ONNX model")
    try:
        # format="protobuf": never guess a text/JSON parser from the file name
        model = onnx.load(str(p), format="protobuf", load_external_data=False)
    except (DecodeError, ProtobufError, RuntimeError, ValueError) as e:
        raise ModelLoadError(f"{p}: not a valid ONNX model (protobuf could not parse it: truncated or not ONNX)") from e
    if not model.HasField("graph") or (not model.opset_import and not model.graph.node):
        raise ModelLoadError(f"{p}: parsed, but holds no ONNX graph (is this an ONNX model?)")
    if load_external_data:
        try:
            onnx.load_external_data_for_model(model, str(p.parent))
        except Exception as e:  # onnx raises OSError, ValueError or its own ValidationError here
            raise ModelLoadError(f"{p}: external data could not be read: {e}") from e
    return model


def save_model(model: onnx.ModelProto, path: str | os.PathLike[str], *, external_data: bool | None = None) -> Path:
    """Write `model` to `path` atomically (temporary file in the same directory, then rename).

    Models at or above protobuf's 2 GiB limit (or with ``external_data=True``) store tensors in
    ``<name>.data`` beside the model; that file is also written before anything is renamed into place.
    """
    out = Path(path)
    if out.is_dir():
        raise OnnxqError(f"{out}: is a directory; give a file name for the output model")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OnnxqError(f"{out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OnnxqError(f"{out}: directory {parent} is not writable")
    if external_data is None:
        external_data = model.ByteSize() >= _PROTOBUF_LIMIT
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent)
    except OSError as e:  # read-only file system, no permission (even for root: /proc, /sys)
        raise OnnxqError(f"{out}: cannot write in {parent} ({e.strerror})") from e
    os.close(fd)
    tmp_data: str | None = None
    try:
        if external_data:
            data_name = out.name + ".data"
            fd2, tmp_data = tempfile.mkstemp(prefix=f".{data_name}.", suffix=".tmp", dir=parent)
            os.close(fd2)
            os.unlink(tmp_data)  # onnx appends to the location; start from nothing
            staged = onnx.ModelProto()
            staged.CopyFrom(model)  # onnx rewrites tensors to EXTERNAL in place: never touch the caller's model
            onnx.save_model(staged, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=os.path.basename(tmp_data), size_threshold=1024)
            # the model refers to the data file by name: point it at the final name before renaming
            m = onnx.load(tmp, load_external_data=False)
            for t in _external_tensors(m):
                for entry in t.external_data:
                    if entry.key == "location":
                        entry.value = data_name
            onnx.save_model(m, tmp)
            set_default_mode(tmp_data)
            os.replace(tmp_data, parent / data_name)
            tmp_data = None
        else:
            onnx.save_model(model, tmp)
        set_default_mode(tmp)
        os.replace(tmp, out)
    except BaseException as e:
        for t in (tmp, tmp_data):
            if t and os.path.exists(t):
                os.unlink(t)
        if isinstance(e, OSError):  # disk full, file too large, I/O error: one line, nothing left behind
            raise OnnxqError(f"{out}: writing the model failed ({e.strerror or e}); nothing was written") from e
        raise
    return out


def _external_tensors(model: onnx.ModelProto):
    from onnx.external_data_helper import _get_all_tensors

    for t in _get_all_tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            yield t


# ------------------------------------------------------------------------ large tensors without copies

_STUB_LOCATION = "onnxq-large-tensor-stub"


def _is_repeated(f) -> bool:  # type: ignore[no-untyped-def]
    return f.is_repeated if hasattr(f, "is_repeated") else f.label == f.LABEL_REPEATED


def _copy_fields(src, dst, skip: frozenset[str] = frozenset()) -> None:  # type: ignore[no-untyped-def]
    for f, v in src.ListFields():
        if f.name in skip:
            continue
        if _is_repeated(f):
            getattr(dst, f.name).extend(v)
        elif f.type == f.TYPE_MESSAGE:
            getattr(dst, f.name).CopyFrom(v)
        else:
            setattr(dst, f.name, v)


def is_stub(t: onnx.TensorProto) -> bool:
    """A placeholder made by split_large_initializers."""
    return t.data_location == onnx.TensorProto.EXTERNAL and any(
        e.key == "location" and e.value == _STUB_LOCATION for e in t.external_data)


def split_large_initializers(model: onnx.ModelProto, threshold: int = 4096
                             ) -> tuple[onnx.ModelProto, dict[str, onnx.TensorProto]]:
    """A copy of `model` whose main-graph initializers over `threshold` bytes (and those already external) are stubs
    (name, type and dims; data "external" at a location nothing reads), made without copying their data; and those
    tensors by name: the caller's own objects, not copies, so `model` must stay alive and unchanged while they are
    used. Graph passes, onnx's converters and shape inference then work on a small model; the weights are copied
    once, by restore_large_initializers, or written straight to a file (a model of several GiB is never held twice
    for them)."""
    sk = onnx.ModelProto()
    _copy_fields(model, sk, frozenset({"graph"}))
    _copy_fields(model.graph, sk.graph, frozenset({"initializer"}))
    large: dict[str, onnx.TensorProto] = {}
    for t in model.graph.initializer:
        if is_stub(t) or (t.data_location != onnx.TensorProto.EXTERNAL and t.ByteSize() <= threshold):
            sk.graph.initializer.append(t)
            continue
        large[t.name] = t
        stub = sk.graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims,
                                        data_location=onnx.TensorProto.EXTERNAL)
        stub.external_data.add(key="location", value=_STUB_LOCATION)
    return sk, large


def restore_large_initializers(model: onnx.ModelProto, large: dict[str, onnx.TensorProto]) -> onnx.ModelProto:
    """Put the tensors back in place of their stubs (in place; returns `model`)."""
    for t in model.graph.initializer:
        if t.name in large and is_stub(t):
            t.CopyFrom(large[t.name])
    return model


def save_skeleton(aug: onnx.ModelProto, large: Mapping[str, onnx.TensorProto], directory: str) -> str:
    """Write a skeleton (``split_large_initializers``: large initializers are stubs) to ``directory`` as
    ``model.onnx``, the stubs' data into one page-aligned file beside it; returns the model's path. The weights go
    straight from the stash to the file: a model of several GiB is never serialized or held twice."""
    data_name = "weights.bin"
    with open(os.path.join(directory, data_name), "wb") as f:
        for t in aug.graph.initializer:
            src = large.get(t.name)
            if src is None or not is_stub(t):
                continue
            if src.data_location == onnx.TensorProto.EXTERNAL or src.data_type == onnx.TensorProto.STRING:
                t.CopyFrom(src)
                continue
            raw = src.raw_data if src.HasField("raw_data") else numpy_helper.to_array(src).tobytes()
            f.write(b"\0" * (-f.tell() % 4096))  # page-aligned, so onnxruntime may map it
            offset = f.tell()
            f.write(raw)
            del t.external_data[:]
            for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
                t.external_data.add(key=k, value=v)
            del raw
    path = os.path.join(directory, "model.onnx")
    onnx.save_model(aug, path)
    return path
