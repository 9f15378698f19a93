"""The README's two commands are the ones CI and users run: keep them and .ci/run in step."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_starts_with_setup_and_test_commands():
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    main_cmd, test_cmd = blocks[0], blocks[1]
    assert main_cmd.startswith("python3 -m venv .venv && .venv/bin/pip install .")
    assert "onnxq quantize sample_models/" in main_cmd and "onnxq run " in main_cmd
    for path in re.findall(r"sample_models/\S+\.(?:onnx|npz)", main_cmd):
        assert (ROOT / path).is_file(), path
    assert test_cmd.startswith("python3 -m venv .venv") and "pytest" in test_cmd


def test_ci_runs_the_readme_test_command():
    test_cmd = _bash_blocks((ROOT / "README.md").read_text())[1]
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_cmd in ci_lines
