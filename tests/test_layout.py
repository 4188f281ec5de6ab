"""The layers of README "Layout" hold: import-linter's contracts in pyproject.toml pass on the tree,
and an import the wrong way round breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "scheduling", "knowledge")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_the_tree_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "data", "eval")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


@pytest.mark.parametrize(("module", "bad_import", "broken"), [
    ("scheduling/slots.py", "from handlers import bookings", "scheduling is not allowed to import handlers"),
    ("bot/wechat/users.py", "from bot.chat import router", "bot.wechat is not allowed to import bot.chat"),
    ("knowledge/engine.py", "from scheduling import slots", "knowledge is not allowed to import scheduling"),
    ("bot/keys.py", "from bot.notify import templates", "bot.keys is not allowed to import bot.notify"),
])
def test_an_import_the_wrong_way_breaks_the_layers(tree_copy: Path, module: str, bad_import: str, broken: str):
    path = tree_copy / module
    path.write_text(path.read_text() + f"\n{bad_import}  # noqa\n")
    result = lint_imports(tree_copy)
    assert result.returncode != 0
    assert broken in result.stdout
