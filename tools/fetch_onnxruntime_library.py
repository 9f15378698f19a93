#!/usr/bin/env python3
"""Fetch ONNX Runtime's shared library (libonnxruntime.so) for C/C++ programs that load the onnxq EP, such as
examples/cpp: from the onnxruntime wheel on PyPI (the registry package that ships it), pinned by version and file
name and checked against its sha256, extracted into a cache outside the repository; prints the library's path
(with the libonnxruntime.so and SONAME libonnxruntime.so.1 links beside it).

    tools/fetch_onnxruntime_library.py      -> /root/.cache/onnxq/onnxruntime-1.32.0/libonnxruntime.so.1.32.0

Environment: ONNXQ_CACHE_DIR (default $XDG_CACHE_HOME/onnxq or ~/.cache/onnxq); ONNXQ_ORT_LIBRARY to use a library
you already have (nothing is fetched).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "1.32.0"
WHEEL = f"onnxruntime-{VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
SHA256 = "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d"
MEMBER = f"onnxruntime/capi/libonnxruntime.so.{VERSION}"


def fail(msg: str) -> None:
    print(f"fetch_onnxruntime_library: error: {msg}", file=sys.stderr)
    sys.exit(1)


def cache_dir() -> Path:
    root = os.environ.get("ONNXQ_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "onnxq")
    return Path(root) / f"onnxruntime-{VERSION}"


def link_names(lib: Path) -> None:
    """The names a linker and the loader look for: libonnxruntime.so (for -lonnxruntime) and the SONAME
    libonnxruntime.so.1 that programs linked against it record."""
    for name in ("libonnxruntime.so", "libonnxruntime.so.1"):
        link = lib.parent / name
        if not link.exists():
            tmp = lib.parent / f".{name}.{os.getpid()}"
            tmp.symlink_to(lib.name)
            os.replace(tmp, link)


def main() -> None:
    override = os.environ.get("ONNXQ_ORT_LIBRARY")
    if override:
        if not Path(override).is_file():
            fail(f"ONNXQ_ORT_LIBRARY={override} is not a file")
        print(Path(override).resolve())
        return
    out = cache_dir() / Path(MEMBER).name
    if out.is_file():
        link_names(out)
        print(out)
        return
    with tempfile.TemporaryDirectory(prefix="onnxq-ort-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--python-version",
               "3.11", "--platform", "manylinux_2_28_x86_64", "-d", tmp, f"onnxruntime=={VERSION}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        wheel = Path(tmp) / WHEEL
        if r.returncode != 0 or not wheel.is_file():
            fail(f"pip could not download {WHEEL}: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != SHA256:
            fail(f"{WHEEL}: sha256 {digest} does not match the pinned {SHA256}")
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            part = out.with_suffix(out.suffix + ".part")
            part.write_bytes(z.read(MEMBER))
            os.replace(part, out)
    link_names(out)
    print(out)


if __name__ == "__main__":
    main()
