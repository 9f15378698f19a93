"""Writing reports (JSON, markdown) atomically, so a crash never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from onnxq.core.errors import OnnxqError


def set_default_mode(path: str | os.PathLike[str]) -> None:
    """mkstemp makes 0600 files; give outputs the mode a plain open() would (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_text_atomic(path: Path, text: str) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OnnxqError(f"{path}: directory {parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise OnnxqError(f"{path}: cannot write here ({e.strerror})") from e
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        set_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):  # disk full, file too large: one line, nothing left behind
            raise OnnxqError(f"{path}: writing failed ({e.strerror or e}); nothing was written") from e
        raise
    return path
