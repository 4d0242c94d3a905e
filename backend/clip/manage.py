"""``clip add``: register a local CLIP file after checking that it loads; and the load check itself."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import open_clip

from backend.clip.catalogue import by_sha256
from backend.clip.store import ClipWeights, record_file, write_dir
from backend.download import sha256_of
from backend.errors import InputError, ModelFileError
from backend.model.config import ClipSpec, clip_spec
from backend.model.weights import build_clip, load_clip_weights, read_state_dict

_log = logging.getLogger(__name__)


def check_loads(path: Path, arch: str) -> ClipSpec:
    """Load ``path`` into ``arch`` (random weights replaced, every tensor checked); return the architecture.

    Args:
        path: The checkpoint.
        arch: An open_clip model name, or a JSON file with an inline open_clip config (its stem
            is the name recorded).

    Raises:
        InputError: ``arch`` is neither an open_clip model nor a readable config.
        ModelFileError: The file is not a tensors-only checkpoint or does not fit ``arch``.
    """
    spec = clip_spec(arch)
    if spec.cfg is None and arch not in open_clip.list_models():
        raise InputError(
            f"--arch {arch!r} is not an open_clip model (e.g. ViT-B-32, ViT-B-16-quickgelu, RN50); "
            "`python -c 'import open_clip; print(open_clip.list_models())'` lists them"
        )
    clip = build_clip(spec, init=False)  # every tensor is loaded next
    load_clip_weights(clip, read_state_dict(path), f"{path.name} as {spec.model}")
    return spec


def _default_name(path: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-.") or "clip"
    return name[:63] if len(name) > 1 else f"{name}-clip"


def add(file: Path, arch: str | None = None, name: str | None = None) -> ClipWeights:
    """Check that ``file`` loads, then place it in the cache (hard link, else copy) and record it.

    A file whose sha256 is a catalogue entry's becomes that entry (its name and architecture).

    Args:
        file: An open_clip state dict (.pt/.bin/.pth/.safetensors) or an OpenAI TorchScript archive.
        arch: The open_clip model it loads into (or a JSON open_clip config); may be left out
            for a catalogue file.
        name: What to call it; by default the catalogue's name, else the file's stem.

    Raises:
        InputError: No such file, no ``arch`` for a file the catalogue does not know, or an
            ``arch`` that contradicts the catalogue.
        ModelFileError: The file does not load with ``arch``.
    """
    file = file.expanduser()
    if not file.is_file():
        raise InputError(f"{file}: no such file; give the path of a CLIP checkpoint")
    sha = sha256_of(file)
    listed = by_sha256(sha)
    if listed is not None:
        if arch is not None and arch.removesuffix("-quickgelu") != listed.arch.removesuffix("-quickgelu"):
            raise InputError(f"{file} is the catalogue's {listed.name} ({listed.arch}), not an {arch} checkpoint")
        arch, name = listed.arch, name or listed.name
        _log.info("%s is the catalogue's %s (sha256 matches)", file.name, listed.name)
    elif arch is None:
        raise InputError(
            f"{file.name} is not a file of the CLIP catalogue (sha256 {sha}): say which open_clip model it is "
            "with --arch (e.g. --arch ViT-B-32 for RemoteCLIP-ViT-B-32.pt)"
        )
    spec = check_loads(file, arch)
    name = name or _default_name(file)
    folder = write_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{name}{file.suffix or '.pt'}"
    if dest.resolve() != file.resolve() and _place(file, dest) and sha256_of(dest) != sha:
        dest.unlink(missing_ok=True)
        raise ModelFileError(f"{file} changed while it was copied to {dest}; nothing was added, try again")
    source = "catalogue" if listed is not None else "added"
    return record_file(name, spec.model, dest, sha, source, str(file.resolve()), spec.cfg)


def _place(file: Path, dest: Path) -> bool:
    """Put ``file``'s bytes at ``dest``: a hard link on one file system, else a copy renamed into place.

    Returns:
        Whether the bytes were copied (a copy is hashed again; a link is the same file).
    """
    dest.unlink(missing_ok=True)
    try:
        os.link(file, dest)
        return False
    except OSError:
        pass
    with tempfile.NamedTemporaryFile(dir=dest.parent, suffix=".partial", delete=False) as tmp, file.open("rb") as src:
        shutil.copyfileobj(src, tmp, 1 << 20)
    Path(tmp.name).replace(dest)
    return True
