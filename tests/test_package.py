"""The QGIS plugin zip: layout, determinism, validation, the extracted plugin, deploy and scan.

Builds run the real command line (``python -m tools.package_plugin``) in a subprocess from the
repository root, on the working tree as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools.package_plugin import PackageError, build

REPO_ROOT = Path(__file__).resolve().parent.parent
TOP = "qgis_clipcd"


def run_tool(module: str, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def build_zip(out: Path) -> Path:
    done = run_tool("tools.package_plugin", "--out", out)
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("qgis_clipcd-*.zip")
    assert f"built {path}" in done.stderr
    return path


def extract(zip_path: Path, dest: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(dest)
    return dest / TOP


def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def copy_with(good: Path, bad: Path, extra: dict[str, bytes], drop: tuple[str, ...] = ()) -> Path:
    """A copy of the zip ``good`` with the ``extra`` entries added and the ``drop`` entries left out."""
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename not in drop:
                dst.writestr(info, src.read(info))
        for name, data in extra.items():
            dst.writestr(name, data)
    return bad


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_zip(tmp_path_factory.mktemp("dist"))


def test_zip_holds_the_plugin_and_nothing_else(plugin_zip: Path) -> None:
    version = next(
        line.split("=", 1)[1].strip()
        for line in (REPO_ROOT / "metadata.txt").read_text(encoding="utf-8").splitlines()
        if line.startswith("version=")
    )
    assert plugin_zip.name == f"qgis_clipcd-{version}.zip"
    assert plugin_zip.stat().st_size < 25_000_000
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert names == sorted(names)
    assert {name.split("/")[0] for name in names} == {TOP}
    for required in ("__init__.py", "metadata.txt", "LICENSE", "backend/__init__.py", "backend/py.typed"):
        assert f"{TOP}/{required}" in names
    # everything the plugin and the engine need, taken from the working tree
    expected = [f"{TOP}/{path.name}" for path in (REPO_ROOT / TOP).glob("*.py")]
    for pattern in ("**/*.py", "**/*.txt", "**/*.json", "**/*.yaml", "**/*.toml"):
        expected += [
            f"{TOP}/{path.relative_to(REPO_ROOT).as_posix()}"
            for path in (REPO_ROOT / "backend").glob(pattern)
            if "__pycache__" not in path.parts
        ]
    expected += [f"{TOP}/resources/icons/{path.name}" for path in (REPO_ROOT / "resources/icons").glob("*.svg")]
    assert f"{TOP}/backend/model/configs/changeclip-lite0.json" in expected
    assert f"{TOP}/backend/clip/catalogue.toml" in expected
    assert f"{TOP}/resources/icons/clipcd.svg" in expected
    assert sorted(set(expected) - set(names)) == []
    # no weights, caches, tests, training or benchmarks
    for name in names:
        assert not name.endswith((".pyc", ".safetensors", ".pth", ".pt", ".zip", ".whl")), name
        assert "__pycache__" not in name and "/resources/models" not in name, name
        assert not name.startswith((f"{TOP}/tests/", f"{TOP}/training/", f"{TOP}/bench/")), name
    metadata = zipfile.ZipFile(plugin_zip).read(f"{TOP}/metadata.txt")
    assert metadata == (REPO_ROOT / "metadata.txt").read_bytes()
    assert b"GNU GENERAL PUBLIC LICENSE" in zipfile.ZipFile(plugin_zip).read(f"{TOP}/LICENSE")


def test_builds_are_byte_identical(plugin_zip: Path, tmp_path: Path) -> None:
    again = build_zip(tmp_path / "again")
    assert again.read_bytes() == plugin_zip.read_bytes()
    assert {info.date_time for info in zipfile.ZipFile(again).infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert [path.name for path in (tmp_path / "again").iterdir()] == [again.name]  # no temporary file left


def test_check_accepts_the_built_zip(plugin_zip: Path) -> None:
    done = run_tool("tools.package_plugin", "--check", plugin_zip)
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stderr and "files" in done.stderr


@pytest.mark.parametrize(
    ("extra", "drop", "message"),
    [
        ({f"{TOP}/__pycache__/cli.cpython-311.pyc": b"compiled"}, (), f"{TOP}/__pycache__/cli.cpython-311.pyc"),
        ({"other/readme.txt": b"a second plugin"}, (), "exactly one top folder, found 2: other, qgis_clipcd"),
        ({"readme.txt": b"beside the folder"}, (), "'readme.txt' lies outside"),
        ({f"{TOP}/backend/lib.so": b"ELF"}, (), f"{TOP}/backend/lib.so"),
        ({f"{TOP}/backend/blob.py": b"x = 1\x00\x01"}, (), "blob.py' holds NUL bytes"),
        ({f"{TOP}/.git/config": b"[core]"}, (), f"{TOP}/.git/config"),
        ({}, (f"{TOP}/LICENSE",), f"lacks {TOP}/LICENSE"),
        ({f"{TOP}/../evil.py": b"x = 1"}, (), "unsafe path"),
    ],
)
def test_check_rejects_a_bad_zip(
    plugin_zip: Path, tmp_path: Path, extra: dict[str, bytes], drop: tuple[str, ...], message: str
) -> None:
    bad = copy_with(plugin_zip, tmp_path / "bad.zip", extra, drop)
    done = run_tool("tools.package_plugin", "--check", bad)
    assert done.returncode == 1, done.stderr
    assert message in done.stderr


def test_check_rejects_metadata_without_required_keys(plugin_zip: Path, tmp_path: Path) -> None:
    metadata = zipfile.ZipFile(plugin_zip).read(f"{TOP}/metadata.txt").decode()
    stripped = "\n".join(line for line in metadata.splitlines() if not line.startswith(("tracker=", "email=")))
    bad = copy_with(
        plugin_zip, tmp_path / "bad.zip", {f"{TOP}/metadata.txt": stripped.encode()}, (f"{TOP}/metadata.txt",)
    )
    done = run_tool("tools.package_plugin", "--check", bad)
    assert done.returncode == 1
    assert "lacks required keys: email, tracker" in done.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run_tool("tools.package_plugin", "--check", tmp_path / "missing.zip").returncode == 2
    assert run_tool("tools.package_plugin", "--no-such-option").returncode == 2
    assert run_tool("tools.deploy_plugin", "--zip", tmp_path / "missing.zip").returncode == 2
    assert run_tool("tools.scan_package", tmp_path / "missing.zip").returncode == 2


def test_a_failed_build_leaves_no_zip(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    for name in ("metadata.txt", "LICENSE"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, root / name)
    (root / TOP).mkdir()
    (root / TOP / "__init__.py").write_text("x = 1\n")
    (root / "backend").mkdir()
    (root / "backend" / "__init__.py").write_bytes(b"x = 1\x00\n")  # a binary in disguise
    out = tmp_path / "dist"
    with pytest.raises(PackageError, match=r"backend/__init__.py' holds NUL bytes"):
        build(out, root=root)
    assert list(out.iterdir()) == []


def python_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """This interpreter run in ``folder`` with an environment that does not point at the checkout."""
    argv = [sys.executable, *args]
    return subprocess.run(argv, cwd=folder, env=clean_env(), capture_output=True, text=True, timeout=300, check=False)


def test_extracted_backend_imports_without_the_checkout(plugin_zip: Path, tmp_path: Path) -> None:
    plugin = extract(plugin_zip, tmp_path)
    done = python_in(plugin, "-c", "import backend.commands.cli, backend.model; print(backend.commands.cli.__file__)")
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == plugin / "backend" / "commands" / "cli.py"


def test_extracted_plugin_finds_its_own_files(plugin_zip: Path, tmp_path: Path) -> None:
    plugin = extract(plugin_zip, tmp_path)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from qgis_clipcd import metadata as m; "
        "print(m.PACKAGE_DIR); print(m.plugin_root()); print(m.backend_root()); print(m.metadata()['version']); "
        "print(m.icon_path().is_file())"
    )
    done = python_in(tmp_path, "-c", code, str(tmp_path))
    assert done.returncode == 0, done.stderr
    package_dir, plugin_root, backend_root, version, icon = done.stdout.split()
    assert Path(package_dir) == plugin
    assert Path(plugin_root) == plugin
    assert Path(backend_root) == plugin
    assert version in plugin_zip.name
    assert icon == "True"


QGIS_INI = """[General]
lastRunVersion=32216

[PythonPlugins]
processing=true
qgis_clipcd=false
other_plugin=false

[qgis]
key\\with\\slashes="quoted, value"
"""


def test_deploy_installs_replaces_and_enables(plugin_zip: Path, tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(QGIS_INI)
    done = run_tool("tools.deploy_plugin", "--profile-dir", profile, "--zip", plugin_zip)
    assert done.returncode == 0, done.stderr
    installed = profile / "python" / "plugins" / TOP
    assert f"installed {plugin_zip.name} into {installed}" in done.stderr
    assert ini.read_text() == QGIS_INI.replace("qgis_clipcd=false", "qgis_clipcd=true")
    names = [name for name in zipfile.ZipFile(plugin_zip).namelist() if not name.endswith("/")]
    assert sorted(p.relative_to(installed.parent).as_posix() for p in installed.rglob("*") if p.is_file()) == names

    (installed / "stale.py").write_text("left from an older version\n")
    done = run_tool("tools.deploy_plugin", "--profile-dir", profile, "--zip", plugin_zip)
    assert done.returncode == 0, done.stderr
    assert not (installed / "stale.py").exists()
    assert (installed / "metadata.txt").is_file()
    assert ini.read_text() == QGIS_INI.replace("qgis_clipcd=false", "qgis_clipcd=true")
    assert [path.name for path in installed.parent.iterdir()] == [TOP]  # no staging folder left


def test_deploy_to_a_fresh_profile_from_the_environment(plugin_zip: Path, tmp_path: Path) -> None:
    profile = tmp_path / "fresh"
    checkout = tmp_path / "checkout"  # a developer's symlinked install must survive as a folder
    checkout.mkdir()
    (checkout / "keep.txt").write_text("mine\n")
    (profile / "python" / "plugins").mkdir(parents=True)
    (profile / "python" / "plugins" / TOP).symlink_to(checkout, target_is_directory=True)
    done = run_tool("tools.deploy_plugin", "--zip", plugin_zip, env={**os.environ, "QGIS_PROFILE_DIR": str(profile)})
    assert done.returncode == 0, done.stderr
    installed = profile / "python" / "plugins" / TOP
    assert not installed.is_symlink() and (installed / "__init__.py").is_file()
    assert (checkout / "keep.txt").read_text() == "mine\n"
    assert (profile / "QGIS" / "QGIS3.ini").read_text() == "[PythonPlugins]\nqgis_clipcd=true\n"


QGIS_SCRIPT = """
import json, sys
import qgis.utils
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication


def report():
    found = {"active": sorted(qgis.utils.active_plugins)}
    try:
        from qgis_clipcd import metadata

        found["root"] = str(metadata.plugin_root())
        found["algorithm"] = QgsApplication.processingRegistry().algorithmById("clipcd:detect_change") is not None
    except Exception as exc:  # reported, so that QGIS still exits
        found["error"] = repr(exc)
    with open(OUT, "w") as stream:
        json.dump(found, stream)
    QApplication.instance().exit(0)


QTimer.singleShot(2000, report)
"""


@pytest.mark.qgis
@pytest.mark.skipif(shutil.which("xvfb-run") is None or shutil.which("qgis") is None, reason="needs qgis and xvfb-run")
def test_deployed_zip_loads_in_the_qgis_desktop(plugin_zip: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"  # a fresh QGIS profile: nothing from this machine's own QGIS
    profile = home / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default"
    done = run_tool("tools.deploy_plugin", "--profile-dir", profile, "--zip", plugin_zip)
    assert done.returncode == 0, done.stderr
    result = tmp_path / "result.json"
    script = tmp_path / "check.py"
    script.write_text(f"OUT = {str(result)!r}\n" + QGIS_SCRIPT)
    # pytest-qgis points QGIS_CUSTOM_CONFIG_PATH at its own profile; the desktop must use HOME's.
    # QT_QPA_PLATFORM=offscreen is refused by the desktop; Xvfb gives it a display instead.
    env = {key: value for key, value in clean_env().items() if not key.startswith(("QGIS_", "QT_QPA"))}
    env["HOME"] = str(home)
    command = ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", "qgis", "--nologo", "--noversioncheck", "--code"]
    desktop = subprocess.Popen(
        [*command, str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so that a hung QGIS can be stopped with its Xvfb
    )
    try:
        log, _ = desktop.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(desktop.pid, signal.SIGKILL)
        log, _ = desktop.communicate()
    assert result.is_file(), log
    found = json.loads(result.read_text())
    assert "error" not in found, found
    assert "qgis_clipcd" in found["active"]
    assert Path(found["root"]) == profile / "python" / "plugins" / TOP
    assert found["algorithm"]


def test_deploy_refuses_an_invalid_zip(plugin_zip: Path, tmp_path: Path) -> None:
    bad = copy_with(plugin_zip, tmp_path / "bad.zip", {"other/x.txt": b"x"})
    done = run_tool("tools.deploy_plugin", "--profile-dir", tmp_path / "profile", "--zip", bad)
    assert done.returncode == 1
    assert "exactly one top folder" in done.stderr
    assert not (tmp_path / "profile" / "python" / "plugins" / TOP).exists()


def test_scan_passes_the_built_zip(plugin_zip: Path) -> None:
    done = run_tool("tools.scan_package", plugin_zip)
    assert done.returncode == 0, done.stderr
    assert ", 0 findings" in done.stderr


def test_scan_finds_a_leaked_key(plugin_zip: Path, tmp_path: Path) -> None:
    leak = (
        b'AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"\n'
        b'AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n'
    )
    bad = copy_with(plugin_zip, tmp_path / "leaky.zip", {f"{TOP}/backend/settings_local.py": leak})
    done = run_tool("tools.scan_package", bad)
    assert done.returncode == 1
    assert f"detect-secrets AWS Access Key: {TOP}/backend/settings_local.py:1" in done.stderr


def test_scan_reports_python_files_bandit_skipped(plugin_zip: Path, tmp_path: Path) -> None:
    # pyproject's bandit exclusions match path substrings: a folder named "tests" is skipped silently
    bad = copy_with(plugin_zip, tmp_path / "hidden.zip", {f"{TOP}/backend/tests/helper.py": b"x = 1\n"})
    done = run_tool("tools.scan_package", bad)
    assert done.returncode == 1
    assert f"bandit did not scan {TOP}/backend/tests/helper.py" in done.stderr
