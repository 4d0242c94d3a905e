"""The worker: real ``python -m backend detect --json-progress`` child processes, run, canceled, dying."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from qgis_clipcd.engine import environment
from qgis_clipcd.engine.environment import find_python, worker_env
from qgis_clipcd.engine.worker import Worker, WorkerResult
from qgis_clipcd.params import RunParams, parse_bands, split_prompts
from tests.conftest import REPO_ROOT
from tests.plugin import write_pair

OUTPUTS = {"probability.tif", "mask.tif", "changes.gpkg", "preview.png"}


def run(params: RunParams, python: str = sys.executable, cancel_at: float | None = None) -> tuple[WorkerResult, list]:
    seen: list[tuple[float, str]] = []
    result = Worker(cancel_grace=30).run(
        params,
        python,
        lambda fraction, message: seen.append((fraction, message)),
        lambda: cancel_at is not None and bool(seen) and seen[-1][0] >= cancel_at,
    )
    return result, seen


def written(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


# -- plain parameters -----------------------------------------------------------------------------------


def test_params_become_detect_options() -> None:
    params = RunParams(
        before="/data/a b.tif",
        after="/data/b.tif",
        out_dir="/tmp/out",
        model="/m.safetensors",
        prompts=("building", "road"),
        threshold=0.4,
        min_area=50,
        device="cpu",
        extent=(1, 2, 3, 4),
        bands=(4, 3, 2),
        tta="d4",
    )
    argv = params.to_argv()
    assert argv[:6] == ["--before", "/data/a b.tif", "--after", "/data/b.tif", "--out", "/tmp/out"]
    options = dict(zip(argv[6::2], argv[7::2], strict=True))
    assert options == {
        "--model": "/m.safetensors",
        "--prompts": "building,road",
        "--threshold": "0.4",
        "--min-area": "50.0",
        "--device": "cpu",
        "--extent": "1.0,2.0,3.0,4.0",
        "--bands": "4,3,2",
        "--tta": "d4",
    }
    assert RunParams("a", "b", "o").to_argv() == ["--before", "a", "--after", "b", "--out", "o"]  # tta: the card's
    assert RunParams("a", "b", "o", tta="none").to_argv()[-2:] == ["--tta", "none"]  # one pass, whatever the card says
    assert params.command_line("/usr/bin/python3").startswith(
        "/usr/bin/python3 -m backend detect --before '/data/a b.tif' --after"
    )


def test_prompt_and_band_text() -> None:
    assert split_prompts(" building, road\ntree,,\n") == ("building", "road", "tree")
    assert parse_bands("") is None
    assert parse_bands("4, 3, 2") == (4, 3, 2)
    assert parse_bands("B04,B03,B02") == ("B04", "B03", "B02")
    assert parse_bands("red, green, 1") == ("red", "green", 1)
    assert RunParams("a", "b", "o", bands=("B04", "B03", "B02")).to_argv()[-2:] == ["--bands", "B04,B03,B02"]
    for bad in ("1,2", "1,,2", "0,1,2"):
        with pytest.raises(ValueError, match=r"three band numbers or names|start at 1"):
            parse_bands(bad)


def test_worker_env_drops_qgis_python_and_gdal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/qgis/python")
    monkeypatch.setenv("PYTHONHOME", "/qgis")
    monkeypatch.setenv("GDAL_DATA", "/qgis/gdal")
    monkeypatch.setenv("PROJ_LIB", "/qgis/proj")
    monkeypatch.setenv("CLIPCD_KEEP", "1")
    env = worker_env()
    assert env["PYTHONPATH"] == str(REPO_ROOT)
    assert "PYTHONHOME" not in env and "GDAL_DATA" not in env and "PROJ_LIB" not in env
    assert env["CLIPCD_KEEP"] == "1"


def test_find_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPCD_PYTHON", "/opt/py/bin/python")
    assert find_python() == "/opt/py/bin/python"
    monkeypatch.delenv("CLIPCD_PYTHON")
    found = find_python()  # the venv running the tests has torch
    assert found is not None and Path(found).parent == Path(sys.executable).parent
    assert Path(found).resolve() == Path(sys.executable).resolve()
    monkeypatch.setattr(sys, "executable", "/home/me/.pyenv/shims/python3")  # what embedded QGIS may report
    assert Path(str(environment.qgis_python())).parent == Path(sys.exec_prefix) / "bin"
    monkeypatch.setattr(environment, "qgis_python", lambda: None)
    monkeypatch.setattr(environment, "configured_python", lambda: "/configured/python")
    assert find_python() == "/configured/python"


# -- real worker processes ----------------------------------------------------------------------------


def test_worker_runs_and_returns_outputs(tmp_path: Path) -> None:
    before, after = write_pair(tmp_path)
    out = tmp_path / "out"
    result, seen = run(RunParams(str(before), str(after), str(out), device="cpu", threshold=0.01))
    assert result.ok, (result.message, result.log)
    assert result.exit_code == 0 and result.error_kind is None and result.message == ""
    assert set(result.outputs) == {"probability", "mask", "changes", "preview"}
    assert all(Path(path).is_file() and Path(path).parent == out for path in result.outputs.values())
    assert written(out) == OUTPUTS
    assert result.summary["polygons"] >= 1 and result.summary["threshold"] == pytest.approx(0.01)
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_canceled_worker_leaves_no_outputs(tmp_path: Path) -> None:
    before, after = write_pair(tmp_path)
    out = tmp_path / "out"
    result, _ = run(RunParams(str(before), str(after), str(out), device="cpu"), cancel_at=0.0)
    assert not result.ok
    assert result.error_kind == "canceled"
    assert "cancel" in result.message.lower()
    assert result.outputs == {}
    assert written(out) == set()


def test_worker_that_dies_is_an_error_with_its_stderr(tmp_path: Path) -> None:
    python = tmp_path / "dying-python"
    python.write_text("#!/bin/sh\necho 'Killed: out of memory' >&2\nexit 1\n")
    python.chmod(0o755)
    before, after = write_pair(tmp_path)
    result, _ = run(RunParams(str(before), str(after), str(tmp_path / "out")), python=str(python))
    assert not result.ok
    assert result.exit_code == 1
    assert result.error_kind == "crashed"
    assert "exit code 1" in result.message and "Killed: out of memory" in result.message
    assert "Killed: out of memory" in result.log


def test_worker_that_cannot_start(tmp_path: Path) -> None:
    result, _ = run(RunParams("a.tif", "b.tif", str(tmp_path)), python=str(tmp_path / "no-such-python"))
    assert not result.ok and result.error_kind == "start" and "no-such-python" in result.message


def test_a_file_that_is_not_a_model_gives_the_engines_message(tmp_path: Path) -> None:
    model = tmp_path / "broken.safetensors"
    model.write_bytes(b"this is not a model")
    before, after = write_pair(tmp_path)
    out = tmp_path / "out"
    result, _ = run(RunParams(str(before), str(after), str(out), model=str(model), device="cpu"))
    assert not result.ok
    assert result.exit_code == 2
    assert result.error_kind not in (None, "crashed", "canceled")
    assert "broken.safetensors" in result.message
    assert written(out) == set()
