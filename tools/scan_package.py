"""Scan the plugin zip as users get it: ``python -m tools.scan_package [ZIP]``.

Validates the zip, extracts it into a temporary folder and runs bandit (with the project's
pyproject.toml settings) and detect-secrets over the extracted files. Without ZIP it builds the
current tree's zip into a temporary folder first. Bandit's exclusions match path substrings, so
the scan runs from inside the extraction folder and checks that bandit really read every Python
file in the zip. Exit codes: 0 clean, 1 a finding or an invalid zip, 2 a usage error.

A false positive of detect-secrets (say, a model checksum that looks like a key) is silenced on
its line with ``# pragma: allowlist secret``; bandit findings with ``# nosec <test id>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess  # nosec B404
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.package_plugin import ROOT, PackageError, build, validate

_log = logging.getLogger("tools.scan_package")


def extract(zip_path: Path, dest: Path) -> list[str]:
    """Validate ``zip_path`` and extract it into ``dest``; return the files' names in the zip."""
    validate(zip_path)  # also refuses absolute and '..' entry names
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(dest)
        return sorted(info.filename for info in zf.infolist() if not info.is_dir())


def _run_json(command: list[str], cwd: Path, tool: str) -> dict[str, Any]:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)  # nosec B603
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        detail = done.stderr.strip()[-2000:] or done.stdout.strip()[-2000:]
        raise PackageError(f"{tool} failed (exit {done.returncode}) without a JSON report: {detail}") from exc
    return report


def bandit_findings(folder: Path, files: Sequence[str]) -> list[str]:
    """Bandit's findings over the extracted plugin in ``folder``, one line each."""
    tops = sorted({name.split("/", 1)[0] for name in files})
    command = [sys.executable, "-m", "bandit", "-q", "-f", "json", "-c", str(ROOT / "pyproject.toml"), "-r", *tops]
    report = _run_json(command, folder, "bandit")
    findings = [
        f"bandit {item['test_id']} ({item['issue_severity']}) {item['filename']}:{item['line_number']}: "
        f"{item['issue_text']}"
        for item in report.get("results", [])
    ]
    findings += [f"bandit could not scan {item['filename']}: {item['reason']}" for item in report.get("errors", [])]
    scanned = set(report.get("metrics", {})) - {"_totals"}
    skipped = [name for name in files if name.endswith(".py") and name not in scanned]
    findings += [f"bandit did not scan {name} (excluded by the bandit settings?)" for name in skipped]
    return findings


def secret_findings(folder: Path, files: Sequence[str]) -> list[str]:
    """detect-secrets' findings over the extracted files in ``folder``, one line each."""
    command = [sys.executable, "-m", "detect_secrets", "scan", "--all-files", *files]
    report = _run_json(command, folder, "detect-secrets")
    return [
        f"detect-secrets {item['type']}: {name}:{item['line_number']}"
        for name, items in sorted(report.get("results", {}).items())
        for item in items
    ]


def scan(zip_path: Path) -> list[str]:
    """Every bandit and detect-secrets finding in the plugin zip (empty when clean)."""
    with tempfile.TemporaryDirectory(prefix="clipcd-scan-") as temp:
        folder = Path(temp)
        files = extract(zip_path, folder)
        findings = bandit_findings(folder, files) + secret_findings(folder, files)
    _log.info(
        "scanned %s: %d Python files with bandit, %d files with detect-secrets, %d findings",
        zip_path.name,
        sum(name.endswith(".py") for name in files),
        len(files),
        len(findings),
    )
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m tools.scan_package", description="Scan the plugin zip.")
    parser.add_argument("zip", nargs="?", type=Path, help="the plugin zip (default: build the current tree's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.zip is not None and not args.zip.is_file():
        _log.error("no zip at %s: build it with `make package` or pass its path", args.zip)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="clipcd-package-") as temp:
            findings = scan(args.zip if args.zip is not None else build(Path(temp)).path)
    except PackageError as exc:
        _log.error("%s", exc)
        return 1
    for finding in findings:
        _log.error("%s", finding)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
