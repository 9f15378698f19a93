"""The installed onnxq version (one source: the package metadata, from pyproject.toml)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("onnxq")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
