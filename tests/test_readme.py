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


#: .ci/run ends each README line with this: under `set -e` a failure before the last `&&` of a list would not stop
#: the script, and a failing pytest would be masked by the steps after it
FAIL_FAST = " || exit 1"


def _ci_commands() -> list[str]:
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    cmds = [ln for ln in lines if ln and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    for c in cmds:
        assert c.endswith(FAIL_FAST), f".ci/run line must end with '{FAIL_FAST}': {c}"
    return [c.removesuffix(FAIL_FAST) for c in cmds]


def test_ci_runs_the_readme_test_command_first():
    test_cmd = _bash_blocks((ROOT / "README.md").read_text())[1]
    assert _ci_commands()[0] == test_cmd


def test_ci_runs_nothing_the_readme_does_not_show():
    readme_lines = {ln.strip() for block in _bash_blocks((ROOT / "README.md").read_text()) for ln in block.splitlines()}
    for cmd in _ci_commands():
        assert cmd in readme_lines, cmd
