"""The code layout: no import cycle, no forbidden import, no crowded folder (tools.import_graph, by ast)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tools import import_graph


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_repository_layout_is_clean() -> None:
    assert import_graph.check(REPO_ROOT) == []


def test_every_package_folder_has_a_readme() -> None:
    missing = [
        str(init.parent.relative_to(REPO_ROOT))
        for package in import_graph.PACKAGES
        for init in (REPO_ROOT / package).rglob("__init__.py")
        if init.parent != REPO_ROOT / package and not (init.parent / "README.md").is_file()
    ]
    assert missing == []


def test_a_cycle_is_reported_by_its_module_names(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "backend/__init__.py": "",
            "backend/stage/__init__.py": "",
            "backend/stage/first.py": "from backend.stage.second import B\nA = 1\n",
            "backend/stage/second.py": "def b():\n    from backend.stage import third\n",
            "backend/stage/third.py": "from .first import A\n",
            "backend/free.py": "import backend.stage.first\n",
        },
    )
    problems = import_graph.check(tmp_path)
    assert problems == ["import cycle: backend.stage.first <-> backend.stage.second <-> backend.stage.third"]


def test_forbidden_imports_and_crowded_folders_are_reported(tmp_path: Path) -> None:
    files = {
        "backend/__init__.py": "",
        "backend/reads.py": "import qgis.core\n",
        "training/__init__.py": "",
        "training/loop.py": "from qgis_clipcd.engine import worker\nfrom backend import reads\n",
        "qgis_clipcd/__init__.py": "",
    }
    files.update({f"qgis_clipcd/m{i}.py": "import training.loop\n" for i in range(13)})
    write_package(tmp_path, files)
    problems = import_graph.check(tmp_path)
    assert "forbidden import: reads.py (backend.reads):1 imports qgis.core" in problems
    assert "forbidden import: loop.py (training.loop):1 imports qgis_clipcd.engine.worker" in problems
    assert "qgis_clipcd holds 13 modules (at most 12)" in problems
    assert len(problems) == 3, problems


def test_the_command_exits_1_on_findings_and_0_when_clean(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {"backend/__init__.py": "", "backend/a.py": "from backend import b\n", "backend/b.py": "import backend.a\n"},
    )
    found = subprocess.run(
        [sys.executable, "-m", "tools.import_graph", str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert found.returncode == 1 and "import cycle: backend.a <-> backend.b" in found.stderr
    clean = subprocess.run(
        [sys.executable, "-m", "tools.import_graph"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert clean.returncode == 0, clean.stderr
