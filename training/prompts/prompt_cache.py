"""The mined-prompt cache: the top-k class names of every image and date of one split.

``python -m training.mine_prompts`` writes it once to ``<data-root>/clipcd-prompts-<split>.json``;
training reads it instead of running a frozen CLIP on every tile. The file::

    {"version": 1, "miner": "ViT-B-16-quickgelu", "pretrained": "openai", "top_k": 9,
     "vocabulary_sha": "<sha256 of the names, one per line>", "dataset": "levir-cd", "split": "train",
     "names": {"<dataset-relative name>": {"a": [9 names], "b": [9 names]}, ...}}

Keys are the dataset's relative sample names (``PairFiles.name``), never absolute paths, so the
cache travels with the data.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from backend.errors import InputError
from backend.outputs.files import atomic_output

CACHE_VERSION = 1
PromptNames = dict[str, tuple[list[str], list[str]]]


def cache_path(data_root: str | os.PathLike[str], split: str) -> Path:
    """Where the cache of ``split`` lives by default: ``<data_root>/clipcd-prompts-<split>.json``."""
    return Path(data_root) / f"clipcd-prompts-{split}.json"


def find_prompt_cache(data_root: str | os.PathLike[str], split: str) -> Path | None:
    """The default cache file of ``split`` when it exists, else None."""
    path = cache_path(data_root, split)
    return path if path.is_file() else None


def vocabulary_sha(vocabulary: Sequence[str]) -> str:
    """SHA-256 of the vocabulary, one name per line: says which names a cache chose from."""
    return hashlib.sha256("\n".join(vocabulary).encode("utf-8")).hexdigest()


def write_prompt_cache(
    path: str | os.PathLike[str],
    names: Mapping[str, tuple[Sequence[str], Sequence[str]]],
    *,
    miner: str,
    pretrained: str,
    top_k: int,
    vocabulary: Sequence[str],
    dataset: str = "",
    split: str = "",
) -> Path:
    """Write a cache atomically (it appears whole or not at all); returns its path."""
    for key in names:
        if Path(key).is_absolute():
            raise InputError(f"prompt cache key {key!r} is an absolute path; use dataset-relative names.")
    document: dict[str, Any] = {
        "version": CACHE_VERSION,
        "miner": miner,
        "pretrained": pretrained,
        "top_k": top_k,
        "vocabulary_sha": vocabulary_sha(vocabulary),
        "dataset": dataset,
        "split": split,
        "names": {key: {"a": list(a), "b": list(b)} for key, (a, b) in sorted(names.items())},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as partial:
        partial.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


def read_prompt_cache(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The whole cache document, validated (see :func:`load_prompt_cache`)."""
    path = Path(path)
    fix = "rerun `python -m training.mine_prompts` to rebuild it"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"prompt cache {path} not found; {fix}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"prompt cache {path} is not readable JSON ({exc}); {fix}.") from exc
    if not isinstance(document, dict) or not isinstance(document.get("names"), dict):
        raise InputError(f"prompt cache {path} has no 'names' object; {fix}.")
    version = document.get("version")
    if version != CACHE_VERSION:
        raise InputError(f"prompt cache {path} has version {version!r}; this ClipCD reads {CACHE_VERSION}: {fix}.")
    for key, entry in document["names"].items():
        if not (
            isinstance(entry, dict)
            and all(isinstance(entry.get(d), list) and all(isinstance(n, str) for n in entry[d]) for d in "ab")
        ):
            raise InputError(f"prompt cache {path}: entry {key!r} needs lists of names under 'a' and 'b'; {fix}.")
    return document


def load_prompt_cache(path: str | os.PathLike[str], vocabulary: Sequence[str] | None = None) -> PromptNames:
    """Read a cache: dataset-relative name -> (names of date A, names of date B).

    Args:
        path: The cache file.
        vocabulary: When given, the cache must have been mined from exactly these names.

    Raises:
        InputError: Missing, unreadable, another version, malformed, or mined from another vocabulary.
    """
    document = read_prompt_cache(path)
    if vocabulary is not None and document.get("vocabulary_sha") != vocabulary_sha(vocabulary):
        raise InputError(
            f"prompt cache {path} was mined from another vocabulary than the model's; "
            "rerun `python -m training.mine_prompts` to rebuild it."
        )
    return {key: (list(entry["a"]), list(entry["b"])) for key, entry in document["names"].items()}
