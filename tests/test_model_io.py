"""onnxq.core.model_io: clear ModelLoadErrors for bad files, inputs never modified, atomic saves."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxq.apps.model_builders import mlp_model
from onnxq.core.errors import ModelLoadError, OnnxqError
from onnxq.core.model_io import load_model, save_model


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _tmp_leftovers(directory: Path) -> list[str]:
    return [n for n in _listing(directory) if ".tmp" in n]


def _initializer_values(model: onnx.ModelProto, base_dir: Path | None = None) -> dict[str, np.ndarray]:
    return {
        t.name: numpy_helper.to_array(t, base_dir=str(base_dir) if base_dir else "")
        for t in model.graph.initializer
    }


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ----------------------------------------------------------------------------------------------- load_model


def test_load_valid_model_roundtrips(tmp_path: Path) -> None:
    m = mlp_model()
    p = tmp_path / "mlp.onnx"
    p.write_bytes(m.SerializeToString())
    digest = _sha256(p)
    loaded = load_model(p)
    assert loaded == m
    assert _sha256(p) == digest


def test_load_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.onnx"
    with pytest.raises(ModelLoadError) as ei:
        load_model(p)
    assert str(p) in str(ei.value)
    assert "no such file" in str(ei.value)
    assert not p.exists()
    assert _listing(tmp_path) == []


def test_load_directory(tmp_path: Path) -> None:
    d = tmp_path / "model.onnx"
    d.mkdir()
    with pytest.raises(ModelLoadError) as ei:
        load_model(d)
    assert str(d) in str(ei.value)
    assert "directory" in str(ei.value)
    assert d.is_dir() and _listing(d) == []


def _truncated_mlp() -> bytes:
    data = mlp_model().SerializeToString()
    return data[: len(data) // 2]


BAD_FILES = {
    "empty": ("empty.onnx", b""),
    "text": ("readme.onnx", b"This is not an ONNX model, just some text.\nSecond line.\n"),
    "text_txt": ("notes.txt", b"hello world\nthis is plain text\n"),
    # onnx.load picks a parser from the file extension: these names route to the JSON / text-format parsers
    "text_json": ("config.json", b'{"name": "not a model", "layers": [1, 2, 3]}\n'),
    "text_textproto": ("model.textproto", b"this is not a text-format protobuf\n"),
    "truncated": ("truncated.onnx", _truncated_mlp()),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_load_bad_file_raises_model_load_error(tmp_path: Path, kind: str) -> None:
    name, content = BAD_FILES[kind]
    p = tmp_path / name
    p.write_bytes(content)
    digest = _sha256(p)
    with pytest.raises(ModelLoadError) as ei:
        load_model(p)
    assert str(p) in str(ei.value)
    assert _sha256(p) == digest
    assert p.read_bytes() == content
    assert _listing(tmp_path) == [name]


def test_load_empty_file_says_empty(tmp_path: Path) -> None:
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load_model(p)


def test_load_missing_external_data(tmp_path: Path) -> None:
    p = tmp_path / "ext.onnx"
    save_model(mlp_model(), p, external_data=True)
    data = tmp_path / "ext.onnx.data"
    assert data.is_file()
    data.unlink()
    digest = _sha256(p)
    with pytest.raises(ModelLoadError) as ei:
        load_model(p)
    assert str(p) in str(ei.value)
    assert _sha256(p) == digest
    assert _listing(tmp_path) == ["ext.onnx"]


def test_load_missing_external_data_without_loading_it(tmp_path: Path) -> None:
    """load_external_data=False only reads the graph: a missing data file is not an error then."""
    p = tmp_path / "ext.onnx"
    save_model(mlp_model(), p, external_data=True)
    (tmp_path / "ext.onnx.data").unlink()
    m = load_model(p, load_external_data=False)
    assert [n.op_type for n in m.graph.node].count("MatMul") == 3
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)


# ----------------------------------------------------------------------------------------------- save_model


def test_save_roundtrip_no_leftovers(tmp_path: Path) -> None:
    m = mlp_model()
    out = tmp_path / "out.onnx"
    ret = save_model(m, out)
    assert Path(ret) == out
    assert out.is_file()
    assert load_model(out) == m
    assert _listing(tmp_path) == ["out.onnx"]
    assert _tmp_leftovers(tmp_path) == []


def test_save_overwrites_existing(tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    out.write_bytes(b"old content")
    m = mlp_model(seed=3)
    save_model(m, out)
    assert load_model(out) == m
    assert _listing(tmp_path) == ["out.onnx"]


def test_save_relative_path_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    m = mlp_model()
    save_model(m, "rel.onnx")
    assert load_model(tmp_path / "rel.onnx") == m
    assert _listing(tmp_path) == ["rel.onnx"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o027])
def test_save_mode_respects_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        out = tmp_path / "out.onnx"
        save_model(mlp_model(), out)
        ext = tmp_path / "ext.onnx"
        save_model(mlp_model(), ext, external_data=True)
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert _mode(out) == expected
    assert _mode(out) != 0o600
    assert _mode(ext) == expected
    assert _mode(tmp_path / "ext.onnx.data") == expected


def test_save_into_missing_directory(tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir" / "out.onnx"
    with pytest.raises(OnnxqError) as ei:
        save_model(mlp_model(), out)
    assert "does not exist" in str(ei.value)
    assert str(out) in str(ei.value)
    assert _listing(tmp_path) == []


def test_save_to_directory_path(tmp_path: Path) -> None:
    d = tmp_path / "target"
    d.mkdir()
    with pytest.raises(OnnxqError) as ei:
        save_model(mlp_model(), d)
    assert str(d) in str(ei.value)
    assert "directory" in str(ei.value)
    assert d.is_dir() and _listing(d) == []
    assert _listing(tmp_path) == ["target"]


def test_save_external_data(tmp_path: Path) -> None:
    m = mlp_model()
    expected = _initializer_values(m)
    out = tmp_path / "big.onnx"
    save_model(m, out, external_data=True)

    data = tmp_path / "big.onnx.data"
    assert data.is_file()
    assert _listing(tmp_path) == ["big.onnx", "big.onnx.data"]
    assert _tmp_leftovers(tmp_path) == []
    # the weights really live in the data file, referenced by its final (relative) name
    assert data.stat().st_size >= sum(a.nbytes for a in expected.values() if a.nbytes >= 1024)
    assert out.stat().st_size < data.stat().st_size
    on_disk = onnx.load(str(out), load_external_data=False)
    locations = {
        e.value
        for t in on_disk.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
        for e in t.external_data
        if e.key == "location"
    }
    assert locations == {"big.onnx.data"}

    loaded = load_model(out)
    got = _initializer_values(loaded)
    assert got.keys() == expected.keys()
    for name, arr in expected.items():
        np.testing.assert_array_equal(got[name], arr, err_msg=name)
        assert got[name].dtype == arr.dtype
    assert [n.op_type for n in loaded.graph.node] == [n.op_type for n in m.graph.node]


def test_save_external_data_does_not_modify_input_model(tmp_path: Path) -> None:
    """Saving must not change the caller's in-memory model (it can be saved again or run afterwards)."""
    m = mlp_model()
    before = m.SerializeToString()
    save_model(m, tmp_path / "a.onnx", external_data=True)
    moved = [t.name for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert moved == [], f"save_model turned the caller's initializers {moved} into external references"
    assert m.SerializeToString() == before
    # the same object can be saved again, inline, and loads back with its weights
    save_model(m, tmp_path / "b.onnx")
    assert load_model(tmp_path / "b.onnx") == mlp_model()


def test_save_external_data_overwrites_previous(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    save_model(mlp_model(seed=0), out, external_data=True)
    m1 = mlp_model(seed=1)
    expected = _initializer_values(m1)
    save_model(m1, out, external_data=True)
    got = _initializer_values(load_model(out))
    for name, arr in expected.items():
        np.testing.assert_array_equal(got[name], arr, err_msg=name)
    assert _listing(tmp_path) == ["m.onnx", "m.onnx.data"]


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_save_failure_preserves_previous_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    out = tmp_path / "out.onnx"
    original = mlp_model(seed=0)
    save_model(original, out)
    digest = _sha256(out)

    calls: list[str] = []

    def failing_save(model, f, *args, **kwargs):  # write part of a file, then fail
        calls.append(str(f))
        Path(f).write_bytes(b"partial garbage")
        raise exc

    monkeypatch.setattr(onnx, "save_model", failing_save)
    # an OSError (disk full) becomes a one-line OnnxqError; Ctrl-C stays a KeyboardInterrupt
    with pytest.raises(OnnxqError if isinstance(exc, OSError) else type(exc)):
        save_model(mlp_model(seed=1), out)
    monkeypatch.undo()

    assert calls, "onnx.save_model was not called"
    assert Path(calls[0]) != out  # it wrote to a temporary, never the output itself
    assert Path(calls[0]).parent == tmp_path
    assert _sha256(out) == digest
    assert load_model(out) == original
    assert _listing(tmp_path) == ["out.onnx"]


def test_save_external_data_failure_midway_preserves_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.onnx"
    data = tmp_path / "out.onnx.data"
    save_model(mlp_model(seed=0), out, external_data=True)
    digests = (_sha256(out), _sha256(data))

    real_save = onnx.save_model
    calls: list[str] = []

    def save_then_fail(model, f, *args, **kwargs):
        calls.append(str(f))
        if len(calls) == 1:  # the model + external data is written to temporaries ...
            return real_save(model, f, *args, **kwargs)
        raise OSError("no space left on device")  # ... then the rewrite of the model fails

    monkeypatch.setattr(onnx, "save_model", save_then_fail)
    with pytest.raises(OnnxqError, match="no space"):
        save_model(mlp_model(seed=1), out, external_data=True)
    monkeypatch.undo()

    assert len(calls) == 2
    assert (_sha256(out), _sha256(data)) == digests
    assert _listing(tmp_path) == ["out.onnx", "out.onnx.data"]
    expected = _initializer_values(mlp_model(seed=0))
    got = _initializer_values(load_model(out))
    for name, arr in expected.items():
        np.testing.assert_array_equal(got[name], arr, err_msg=name)
