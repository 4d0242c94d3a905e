"""``python -m backend clip list | get NAME | add FILE --arch ARCH | remove NAME``: CLIP weights on this computer."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from backend.clip import store
from backend.clip.catalogue import PINNED, catalogue
from backend.commands.report import ProgressBar, emit, json_progress
from backend.download import DownloadCanceled, DownloadError
from backend.errors import CanceledError, ModelFileError

_log = logging.getLogger(__name__)


def rows() -> list[dict[str, Any]]:
    """One row per catalogue entry, then per added file: what ``clip list`` shows."""
    present = store.installed()
    out: list[dict[str, Any]] = []
    for entry in catalogue().values():
        weights = present.get(entry.name)
        out.append(
            {
                "name": entry.name,
                "arch": entry.arch,
                "size_mb": entry.size_mb,
                "licence": entry.licence,
                "present": weights is not None,
                "path": str(weights.path) if weights else None,
                "sha256": weights.sha256 if weights else entry.sha256_text,
                "source": "catalogue",
                "url": entry.url,
                "note": entry.note,
            }
        )
    for weights in present.values():
        if weights.name not in catalogue():
            out.append(
                {
                    "name": weights.name,
                    "arch": weights.arch,
                    "size_mb": round(weights.size / 1e6),
                    "licence": "as its source states",
                    "present": True,
                    "path": str(weights.path),
                    "sha256": weights.sha256,
                    "source": weights.source,
                    "url": None,
                    "note": f"added from {weights.origin}",
                }
            )
    return out


def cmd_list(args: argparse.Namespace) -> int:
    """Print the catalogue and the added files, whether each is present, and the folders searched."""
    table = rows()
    labeller = store.preferred()
    folders: dict[str, Any] = {
        "writes_to": str(store.write_dir()),
        "searched": [str(p) for p in store.search_dirs()],
        "labels_with": labeller.name if labeller else None,
    }
    if args.json_progress:
        emit({"event": "done", "weights": table, **folders})
        return 0
    if args.json:
        sys.stdout.write(json.dumps({"weights": table, **folders}, indent=2) + "\n")
        return 0
    out = sys.stdout
    out.write(f"{'name':<22} {'architecture':<20} {'size':>8}  {'present':<8} {'licence':<16} sha256\n")
    for row in table:
        licence = row["licence"].split(" (")[0].split(",")[0]
        sha = row["sha256"] if row["sha256"] == PINNED else row["sha256"][:16] + "…"
        present = "yes" if row["present"] else "no"
        size = f"{row['size_mb']} MB"
        out.write(f"{row['name']:<22} {row['arch']:<20} {size:>8}  {present:<8} {licence:<16} {sha}\n")
    out.write(f"\nfiles go to {store.write_dir()}")
    others = [str(p) for p in store.search_dirs()[1:]]
    out.write(f"; also searched: {', '.join(others)}\n" if others else "\n")
    out.write(
        "get one: python -m backend clip get NAME; add a local file: python -m backend clip add FILE --arch ARCH\n"
    )
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    """Download a catalogue entry (resumed, checksummed) unless it is present; print where it is."""
    entry = store.entry(args.name)
    report = json_progress() if args.json_progress else ProgressBar(sys.stderr)

    def on_progress(done: int, total: int | None) -> None:
        size = total or entry.size_mb * 1_000_000
        report(min(done / size, 1.0), f"{done / 1e6:.0f} of {size / 1e6:.0f} MB")

    try:
        weights = store.fetch(args.name, on_progress=on_progress)
    except DownloadCanceled as exc:
        raise CanceledError(str(exc)) from exc
    except DownloadError as exc:
        raise ModelFileError(str(exc)) from exc
    finally:
        if isinstance(report, ProgressBar):
            report.close()
    done: dict[str, Any] = {"event": "done", "name": weights.name, "path": str(weights.path), "sha256": weights.sha256}
    if entry.sha256 is None:
        done["pinned"] = True
    if args.json_progress:
        emit(done)
    else:
        pinned = " (pinned on first download: the publisher gives no hash)" if entry.sha256 is None else ""
        sys.stdout.write(f"{weights.name}: {weights.path}\nsha256 {weights.sha256}{pinned}\n")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    """Check that a local file loads with its architecture, then register it."""
    from backend.clip.manage import add  # torch and open_clip: only for this command

    weights = add(args.file, args.arch, args.name)
    if args.json_progress:
        emit(
            {
                "event": "done",
                "name": weights.name,
                "arch": weights.arch,
                "path": str(weights.path),
                "sha256": weights.sha256,
            }
        )
    else:
        sys.stdout.write(f"added {weights.name} ({weights.arch}): {weights.path}\nsha256 {weights.sha256}\n")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    """Delete a name's files (and partial downloads); exit 2 when there was nothing to remove."""
    removed = store.remove(args.name)
    if not removed:
        raise ModelFileError(f"no CLIP weights called {args.name!r} on this computer (`python -m backend clip list`)")
    if args.json_progress:
        emit({"event": "done", "name": args.name, "removed": [str(p) for p in removed]})
        return 0
    for path in removed:
        sys.stdout.write(f"removed {path}\n")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``clip`` and its four commands."""
    clip = subparsers.add_parser("clip", help="CLIP weights: list, get, add, remove")
    commands = clip.add_subparsers(dest="clip_command", required=True, metavar="ACTION")
    listing = commands.add_parser("list", help="the catalogue and what is on this computer")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.add_argument("--json-progress", action="store_true", help="print one JSON 'done' event (the plugin's)")
    listing.set_defaults(handler=cmd_list)
    get = commands.add_parser("get", help="download catalogue weights (resumed, sha256 checked)")
    get.add_argument("name", metavar="NAME", help="a catalogue name (clip list)")
    get.add_argument("--json-progress", action="store_true", help="print JSON lines instead of a progress bar")
    get.set_defaults(handler=cmd_get)
    add = commands.add_parser("add", help="register a local CLIP file after checking that it loads")
    add.add_argument("file", metavar="FILE", type=Path, help="an open_clip state dict or an OpenAI .pt archive")
    add.add_argument(
        "--arch", help="its open_clip model (ViT-B-32, ViT-L-14, RN50, ...); not needed for catalogue files"
    )
    add.add_argument("--name", help="what to call it (default: the catalogue's name, else the file's stem)")
    add.add_argument("--json-progress", action="store_true", help="print JSON lines (errors too)")
    add.set_defaults(handler=cmd_add)
    remove = commands.add_parser("remove", help="delete downloaded or added weights")
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("--json-progress", action="store_true", help="print JSON lines (errors too)")
    remove.set_defaults(handler=cmd_remove)
