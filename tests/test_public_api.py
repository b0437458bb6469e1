"""The public API: ``import sss_core`` is cheap, every name it lists resolves, and the README's example runs."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sss_core

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in ``cwd`` with the repository on the path."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_every_public_name_resolves():
    assert set(sss_core._MODULE_OF) == set(sss_core.__all__) and len(sss_core.__all__) == len(set(sss_core.__all__))
    missing = [name for name in sss_core.__all__ if getattr(sss_core, name, None) is None]
    assert not missing
    assert set(sss_core.__all__) <= set(dir(sss_core))


def test_type_checkers_see_the_same_names_as_run_time():
    tree = ast.parse(Path(sss_core.__file__).read_text())
    block = next(node for node in tree.body
                 if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING")
    seen = {alias.name for node in block.body for alias in node.names}
    assert seen == set(sss_core.__all__)


def test_importing_the_package_loads_no_torch(tmp_path):
    res = _python("import sys, sss_core; print('torch' in sys.modules, 'transformers' in sys.modules)", tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_readme_python_example_runs_from_another_folder(tmp_path):
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"## Python\n\n```python\n(.*?)```", readme, re.DOTALL).group(1)
    assert "import sss_core" in example or "from sss_core import" in example
    assert len([line for line in example.splitlines() if line.startswith(("import ", "from "))]) == 1
    res = _python(example, tmp_path)
    assert res.returncode == 0, res.stderr
    assert "reliability" in res.stdout and "rewrite" in res.stdout
