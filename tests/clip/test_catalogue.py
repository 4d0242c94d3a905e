"""The CLIP catalogue: every entry complete and real-looking, and malformed entries refused."""

from __future__ import annotations

import re
from pathlib import Path

import open_clip
import pytest

from backend.clip.catalogue import CATALOGUE_FILE, PINNED, catalogue, for_tag, parse_entry, read_catalogue
from backend.errors import InputError

#: Facts checked by hand: OpenAI's download URLs carry the file's sha256 in their path.
OPENAI_SHA256 = {
    "openai-vit-b-16": "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
    "openai-rn50": "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
    "openai-vit-b-32": "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
}


def test_every_entry_is_complete_and_loadable_by_open_clip() -> None:
    entries = read_catalogue(CATALOGUE_FILE)
    wanted = {"openai-vit-b-16", "openai-vit-l-14", "openai-rn50", "remoteclip-vit-b-32", "remoteclip-vit-l-14"}
    assert wanted <= set(entries)
    assert any(name.startswith("georsclip") for name in entries)
    known = set(open_clip.list_models())
    for entry in entries.values():
        assert entry.url.startswith("https://") and "example" not in entry.url, entry.name
        assert entry.size_mb > 0 and entry.licence and entry.note, entry.name
        assert entry.arch in known, f"{entry.name}: open_clip has no model {entry.arch}"
        assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256), entry.name
        assert entry.sha256_text == (entry.sha256 or PINNED)


def test_openai_hashes_are_the_ones_in_their_urls() -> None:
    entries = catalogue()
    for name, sha in OPENAI_SHA256.items():
        assert entries[name].sha256 == sha and f"/{sha}/" in entries[name].url
    for entry in entries.values():
        if entry.name.startswith("openai-"):
            assert entry.format == "openai-jit" and f"/{entry.sha256}/" in entry.url
            assert entry.url == open_clip.get_pretrained_cfg(entry.arch, "openai")["url"]


def test_the_openai_tag_maps_to_the_catalogue_file() -> None:
    assert for_tag("ViT-B-16", "openai") is catalogue()["openai-vit-b-16"]
    assert for_tag("ViT-B-16-quickgelu", "openai") is catalogue()["openai-vit-b-16"]
    assert for_tag("RN50-quickgelu", "openai") is catalogue()["openai-rn50"]
    assert for_tag("ViT-B-16", "laion2b_s34b_b88k") is None


GOOD = {
    "name": "x-clip",
    "arch": "ViT-B-32",
    "url": "https://host/x.pt",
    "format": "state-dict",
    "size_mb": 5,
    "licence": "MIT",
    "sha256": PINNED,
    "note": "n",
}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"url": "http://host/x.pt"}, "https://"),
        ({"sha256": "abc"}, "64 lower-case hex"),
        ({"format": "pickle"}, "format"),
        ({"size_mb": 0}, "size_mb"),
        ({"name": "Bad Name"}, "name"),
        ({"extra": 1}, "unknown fields ['extra']"),
    ],
)
def test_malformed_entries_are_refused_by_name(change: dict[str, object], fragment: str) -> None:
    with pytest.raises(InputError, match=re.escape(fragment)):
        parse_entry({**GOOD, **change}, "entry 1")


def test_a_repeated_name_is_refused(tmp_path: Path) -> None:
    table = "\n".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in GOOD.items())
    path = tmp_path / "c.toml"
    path.write_text(f"[[clip]]\n{table}\n[[clip]]\n{table}\n", encoding="utf-8")
    with pytest.raises(InputError, match="used twice"):
        read_catalogue(path)
