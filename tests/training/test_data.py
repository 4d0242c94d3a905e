"""training.data.loaders: sources filtered by stem, the crop pool, reflect padding, and eval sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backend.errors import InputError
from tests.training.tinyrun import make_pairs
from training.data.augment import IGNORE
from training.data.loaders import CropPool, collate, eval_set, open_source, source_root
from training.fit.config import Source


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pair_1..pair_3 of 64², big_1 of 96², small_1 of 40²."""
    folder = tmp_path_factory.mktemp("data")
    make_pairs(folder, count=3, size=64)
    make_pairs(folder, count=1, size=96, seed=1, prefix="big")
    make_pairs(folder, count=1, size=40, seed=2, prefix="small")
    return folder


def _stems(pool: CropPool) -> list[str]:
    return sorted({Path(pool.datasets[d].files[i].name).stem for d, i in pool.entries})


def test_the_pool_keeps_only_or_drops_the_named_stems(root: Path) -> None:
    kept = CropPool([Source("folder", only=("pair_1", "big_1"))], root, 32)
    assert _stems(kept) == ["big_1", "pair_1"] and len(kept) == 2
    dropped = CropPool([Source("folder", exclude=("pair_1", "small_1"))], root, 32)
    assert _stems(dropped) == ["big_1", "pair_2", "pair_3"]
    both = CropPool([Source("folder", only=("pair_1", "pair_2"), exclude=("pair_2",))], root, 32)
    assert _stems(both) == ["pair_1"]


def test_several_sources_make_one_pool(root: Path) -> None:
    pool = CropPool([Source("folder", only=("pair_1",)), Source("folder", only=("pair_2",))], root, 32)
    assert len(pool) == 2 and len(pool.datasets) == 2
    assert {pool[i]["name"] for i in range(2)} == {"A/pair_1.png", "A/pair_2.png"}


def test_repeat_by_area_lists_each_image_once_per_crop_of_its_area(root: Path) -> None:
    sources = [Source("folder", only=("pair_1", "big_1", "small_1"))]
    pool = CropPool(sources, root, 32, repeat_by_area=True)
    counts = {stem: 0 for stem in ("pair_1", "big_1", "small_1")}
    for d, i in pool.entries:
        counts[Path(pool.datasets[d].files[i].name).stem] += 1
    assert counts == {"pair_1": 4, "big_1": 9, "small_1": 2}  # 64²/32², 96²/32², ceil(40²/32²)
    assert len(pool) == 15
    assert len(CropPool(sources, root, 32)) == 3
    assert len(CropPool(sources, root, 128, repeat_by_area=True)) == 3  # at least once each


def test_crops_have_the_contract_shapes_and_change_with_the_epoch(root: Path) -> None:
    pool = CropPool([Source("folder", only=("big_1",))], root, 32, cache=True, seed=3)
    sample = pool[0]
    assert sample["image_a"].shape == (3, 32, 32) and sample["image_a"].dtype == torch.float32
    assert sample["mask"].shape == (32, 32) and sample["mask"].dtype == torch.int64
    assert set(sample["mask"].unique().tolist()) <= {0, 1}
    assert torch.equal(pool[0]["image_a"], sample["image_a"]), "a crop must be fixed by seed, epoch and index"
    pool.set_epoch(1)
    assert not torch.equal(pool[0]["image_a"], sample["image_a"])
    batch = collate([pool[0], pool[0]])
    assert batch["image_a"].shape == (2, 3, 32, 32) and batch["name"] == ["A/big_1.png"] * 2
    assert "names" not in batch


def test_a_small_image_is_reflect_padded_and_its_mask_padded_with_255(root: Path) -> None:
    pool = CropPool([Source("folder", only=("small_1",))], root, 64)
    whole = pool.datasets[0][pool.entries[0][1]]
    sample = pool[0]
    mask, image = sample["mask"], sample["image_a"]
    assert mask.shape == (64, 64) and image.shape == (3, 64, 64)
    assert bool((mask[40:, :] == IGNORE).all()) and bool((mask[:, 40:] == IGNORE).all())
    assert torch.equal(mask[:40, :40], whole["mask"])
    assert torch.equal(image[:, :40, :40], whole["image_a"])
    assert torch.equal(image[:, 40, :40], whole["image_a"][:, 38]), "the pad must mirror the image"
    assert torch.equal(image[:, :40, 45], whole["image_a"][:, :, 33])


def test_an_unknown_stem_is_an_input_error_naming_the_stems(root: Path) -> None:
    for source in (Source("folder", only=("pair_9",)), Source("folder", exclude=("pair_1", "nope"))):
        with pytest.raises(InputError) as caught:
            open_source(source, root)
        message = str(caught.value)
        assert repr(source.only[0] if source.only else "nope") in message
        assert "pair_1" in message and "big_1" in message and str(root) in message


def test_filters_that_leave_nothing_are_refused(root: Path) -> None:
    stems = ("pair_1", "pair_2", "pair_3", "big_1", "small_1")
    with pytest.raises(InputError, match="leave no image"):
        open_source(Source("folder", exclude=stems), root)


def test_eval_sets_are_whole_images_limited_by_max_images(root: Path) -> None:
    full = eval_set(Source("folder", exclude=("small_1",)), root)
    assert len(full) == 4  # type: ignore[arg-type]
    assert full[0]["image_a"].shape[-1] in (64, 96)
    assert len(eval_set(Source("folder"), root, max_images=2)) == 2  # type: ignore[arg-type]


def test_source_roots_are_relative_to_the_data_root_unless_absolute(tmp_path: Path) -> None:
    assert source_root(Source("folder", "levir"), tmp_path) == tmp_path / "levir"
    assert source_root(Source("folder", str(tmp_path / "x")), "/elsewhere") == tmp_path / "x"
