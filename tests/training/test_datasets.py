"""training.datasets: every dataset class on its generated tree, the layout errors, and the real samples."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from backend.errors import InputError
from tests.training import fakedata
from training.data.imageio import read_image, read_label, sniff
from training.datasets import CDD, DATASETS, ChangeDataset, FolderDataset, LEVIRCDPlus, get_dataset

CASES = [(name, split) for name in fakedata.GENERATORS for split in ("train", "val", "test")]


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, fakedata.FakeTree]:
    base = tmp_path_factory.mktemp("datasets")
    return {name: make(base / name) for name, make in fakedata.GENERATORS.items()}


def test_every_dataset_has_a_generator() -> None:
    assert set(DATASETS) == set(fakedata.GENERATORS)
    assert list(DATASETS) == ["levir-cd", "levir-cd-plus", "whu-cd", "cdd", "sysu-cd", "oscd", "folder", "txt-list"]


@pytest.mark.parametrize(("name", "split"), CASES)
def test_samples(trees: dict[str, fakedata.FakeTree], name: str, split: str) -> None:
    tree = trees[name]
    ds = get_dataset(name, tree.root, split)
    assert isinstance(ds, ChangeDataset)
    assert len(ds) == len(ds.files) == tree.counts[split]
    names = [f.name for f in ds.files]
    assert len(set(names)) == len(names)
    for index in range(len(ds)):
        sample = ds[index]
        assert set(sample) == {"image_a", "image_b", "mask", "name"}
        for key in ("image_a", "image_b"):
            image = sample[key]
            assert image.dtype == torch.float32
            assert image.shape == (3, fakedata.SIZE, fakedata.SIZE)
            assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        mask = sample["mask"]
        assert mask.dtype == torch.int64
        assert mask.shape == (fakedata.SIZE, fakedata.SIZE)
        assert set(mask.unique().tolist()) == {0, 1}  # every fake label has a rectangle of change
        assert sample["name"] == names[index]
        assert not Path(sample["name"]).is_absolute() and str(tree.root) not in sample["name"]


@pytest.mark.parametrize("name", list(fakedata.GENERATORS))
def test_crop(trees: dict[str, fakedata.FakeTree], name: str) -> None:
    ds = get_dataset(name, trees[name].root, "train", crop=16, seed=3)
    sample = ds[0]
    assert sample["image_a"].shape == sample["image_b"].shape == (3, 16, 16)
    assert sample["mask"].shape == (16, 16)
    assert set(sample["mask"].unique().tolist()) <= {0, 1}


def test_crop_is_one_window_for_both_dates_and_the_mask(trees: dict[str, fakedata.FakeTree]) -> None:
    whole = get_dataset("levir-cd", trees["levir-cd"].root, "train")[0]
    cropped = get_dataset("levir-cd", trees["levir-cd"].root, "train", crop=20, seed=7)[0]
    image = whole["image_a"].numpy()
    hits = [
        (t, left)
        for t in range(fakedata.SIZE - 19)
        for left in range(fakedata.SIZE - 19)
        if np.array_equal(image[:, t : t + 20, left : left + 20], cropped["image_a"].numpy())
    ]
    assert len(hits) == 1
    top, left = hits[0]
    assert torch.equal(cropped["image_b"], whole["image_b"][:, top : top + 20, left : left + 20])
    assert torch.equal(cropped["mask"], whole["mask"][top : top + 20, left : left + 20])


def test_crop_is_seeded(trees: dict[str, fakedata.FakeTree]) -> None:
    root = trees["sysu-cd"].root
    first = [get_dataset("sysu-cd", root, "train", crop=8, seed=11)[0]["image_a"] for _ in range(2)]
    assert torch.equal(first[0], first[1])
    ds = get_dataset("sysu-cd", root, "train", crop=8, seed=11)
    assert not torch.equal(ds[0]["image_a"], ds[0]["image_a"])  # the RNG advances between reads


def test_crop_larger_than_the_image_pads_the_mask_with_ignore(trees: dict[str, fakedata.FakeTree]) -> None:
    sample = get_dataset("levir-cd", trees["levir-cd"].root, "test", crop=48)[0]
    assert sample["image_a"].shape == (3, 48, 48)
    mask = sample["mask"]
    assert set(mask.unique().tolist()) == {0, 1, 255}
    assert int((mask != 255).sum()) == fakedata.SIZE**2
    assert float(sample["image_a"].min()) >= 0.0 and float(sample["image_a"].max()) <= 1.0


def test_dataloader_batches(trees: dict[str, fakedata.FakeTree]) -> None:
    ds = get_dataset("whu-cd", trees["whu-cd"].root, "train", crop=16)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image_a"].shape == (4, 3, 16, 16)
    assert batch["mask"].shape == (4, 16, 16)
    assert batch["name"] == [f.name for f in ds.files[:4]]


def test_names(trees: dict[str, fakedata.FakeTree]) -> None:
    assert get_dataset("levir-cd", trees["levir-cd"].root, "train").files[0].name == "train/A/train_1.png"
    assert get_dataset("whu-cd", trees["whu-cd"].root, "test").files[0].name == "A/whucd_00009.png"
    assert get_dataset("sysu-cd", trees["sysu-cd"].root, "val").files[0].name == "val/time1/12000.png"
    assert get_dataset("cdd", trees["cdd"].root, "test").files[1].name == "test/A/00001.jpg"
    assert get_dataset("folder", trees["folder"].root, "any").files[2].name == "A/pair_3.jpg"
    assert [f.name for f in get_dataset("txt-list", trees["txt-list"].root, "train").files] == [
        "images/A/img_1.png",
        "images/A/img_2.png",
        "images/A/img_3.png",
    ]
    assert get_dataset("txt-list", trees["txt-list"].root, "val").files[0].name == "images/A/img_4.png"


def test_levircd_plus_val_is_every_tenth_training_image(trees: dict[str, fakedata.FakeTree]) -> None:
    root = trees["levir-cd-plus"].root
    train = [f.name for f in LEVIRCDPlus(root, "train").files]
    val = [f.name for f in LEVIRCDPlus(root, "val").files]
    assert val == ["train/A/train_1.png", "train/A/train_11.png"]  # natural order: 1, 2, ..., 10, 11, 12
    assert not set(train) & set(val)
    assert len(train) + len(val) == 12
    assert train[:2] == ["train/A/train_2.png", "train/A/train_3.png"]


@pytest.mark.parametrize("level", ["parent", "Real", "subset"])
def test_cdd_accepts_three_roots(trees: dict[str, fakedata.FakeTree], level: str) -> None:
    base = trees["cdd"].root
    root = {"parent": base, "Real": base / "Real", "subset": base / "Real" / "subset"}[level]
    assert [f.name for f in CDD(root, "val").files] == ["val/A/00000.jpg", "val/A/00001.jpg"]


def test_cdd_jpeg_labels_are_thresholded(trees: dict[str, fakedata.FakeTree]) -> None:
    ds = CDD(trees["cdd"].root, "train")
    raw = read_label(ds.files[0].label)
    assert (raw > 0).sum() > (raw > 127).sum()  # JPEG left faint values beside the change ...
    assert np.array_equal(ds[0]["mask"].numpy(), (raw > 127).astype(np.int64))  # ... that do not count


def test_folder_prefers_the_split_folder(tmp_path: Path) -> None:
    fakedata.make_levircd(tmp_path, {"train": 2, "test": 1})
    ds = FolderDataset(tmp_path, "train")
    assert [f.name for f in ds.files] == ["train/A/train_1.png", "train/A/train_2.png"]


def test_txtlist_names_outside_root_are_relative(tmp_path: Path) -> None:
    data = tmp_path / "elsewhere"
    folders = (data / "A", data / "B", data / "label")
    fakedata.write_triple(folders, "x.png", np.random.default_rng(0))
    root = tmp_path / "lists"
    root.mkdir()
    (root / "test.txt").write_text(" ".join(str(f / "x.png") for f in folders) + "\n")
    assert get_dataset("txt-list", root, "test").files[0].name == "A/x.png"


def test_txtlist_bad_lines(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a.png b.png\n")
    with pytest.raises(InputError, match=r"line 1 has 2 fields"):
        get_dataset("txt-list", tmp_path, "train")
    (tmp_path / "train.txt").write_text("a.png b.png c.png\n")
    with pytest.raises(InputError, match=r"do not exist: .*a\.png"):
        get_dataset("txt-list", tmp_path, "train")


@pytest.mark.parametrize("name", list(fakedata.GENERATORS))
def test_missing_root_shows_the_layout(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError) as info:
        get_dataset(name, tmp_path / "nowhere", "train")
    message = str(info.value)
    assert "expects <root>/" in message and "nowhere is not a folder" in message
    assert "\n<root>/\n  " in message  # the tree


MISSING = {
    "levir-cd": ("train/B", "train/B is missing"),
    "levir-cd-plus": ("train/label", "train/label is missing"),
    "whu-cd": ("list/val.txt", "list/val.txt is missing"),
    "cdd": ("Real/subset/test/OUT", "test/OUT is missing"),
    "sysu-cd": ("val/time2", "val/time2 is missing"),
    "oscd": ("testcity1/imgs_2", "testcity1/imgs_2 is missing"),
    "folder": ("B", "B is missing"),
    "txt-list": ("test.txt", "test.txt is missing"),
}


@pytest.mark.parametrize("name", list(fakedata.GENERATORS))
def test_missing_split_part_is_named(tmp_path: Path, name: str) -> None:
    tree = fakedata.GENERATORS[name](tmp_path / name)
    part, expected = MISSING[name]
    target = tree.root / part
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    split = {"levir-cd": "train", "levir-cd-plus": "val", "whu-cd": "val", "cdd": "test", "sysu-cd": "val"}
    with pytest.raises(InputError, match=expected) as info:
        get_dataset(name, tree.root, split.get(name, "test"))
    assert "Expected layout" in str(info.value)


def test_levircd_message_example(tmp_path: Path) -> None:
    fakedata.make_levircd(tmp_path)
    shutil.rmtree(tmp_path / "train" / "B")
    with pytest.raises(InputError) as info:
        get_dataset("levir-cd", tmp_path, "train")
    first = str(info.value).splitlines()[0]
    assert first.startswith("LEVIR-CD expects <root>/train/A/*.png, <root>/train/B/*.png, <root>/train/label/*.png; ")
    assert first.endswith(f"{tmp_path / 'train' / 'B'} is missing.")


def test_unknown_split_and_dataset(trees: dict[str, fakedata.FakeTree]) -> None:
    with pytest.raises(InputError, match=r"LEVIR-CD has no split 'trian'; choose one of train, val, test"):
        get_dataset("levir-cd", trees["levir-cd"].root, "trian")
    with pytest.raises(InputError, match=r"Unknown dataset 'levir'; choose one of levir-cd, levir-cd-plus, .*txt-list"):
        get_dataset("levir", trees["levir-cd"].root, "train")


def test_unmatched_names_are_listed(tmp_path: Path) -> None:
    fakedata.make_levircd(tmp_path, {"train": 8})
    for n in range(2, 9):
        (tmp_path / "train" / "label" / f"train_{n}.png").unlink()
    (tmp_path / "train" / "B" / "extra.png").write_bytes((tmp_path / "train" / "B" / "train_1.png").read_bytes())
    with pytest.raises(InputError) as info:
        get_dataset("levir-cd", tmp_path, "train")
    message = str(info.value)
    assert "label lacks extra, train_2, train_3, train_4, train_5 and 3 more" in message
    assert "A lacks extra" in message


def test_whucd_list_names_missing_files(tmp_path: Path) -> None:
    tree = fakedata.make_whucd(tmp_path)
    (tree.root / "B" / "whucd_00002.png").unlink()
    with pytest.raises(InputError, match=r"train\.txt names files that are not in all of .*whucd_00002\.png"):
        get_dataset("whu-cd", tree.root, "train")
    assert len(get_dataset("whu-cd", tree.root, "test")) == 2


def test_sizes_must_match(tmp_path: Path) -> None:
    fakedata.make_levircd(tmp_path, {"test": 1})
    fakedata.write_triple(
        (tmp_path / "x", tmp_path / "x", tmp_path / "test" / "label"), "test_1.png", np.random.default_rng(0), 16
    )
    with pytest.raises(InputError, match=r"differ in size"):
        get_dataset("levir-cd", tmp_path, "test")[0]


def test_bad_crop(trees: dict[str, fakedata.FakeTree]) -> None:
    with pytest.raises(InputError, match=r"crop=0"):
        get_dataset("levir-cd", trees["levir-cd"].root, "train", crop=0)


@pytest.mark.samples
def test_real_samples(samples: Path) -> None:
    ds = get_dataset("folder", samples / "levir-cd", "test")
    assert len(ds) == 6
    assert ds.files[0].name == "A/test_1.png"
    sample = ds[0]
    assert sample["image_a"].shape == (3, 1024, 1024)
    assert set(sample["mask"].unique().tolist()) == {0, 1}
    assert 0.0 < float(sample["mask"].float().mean()) < 0.5
    jpeg = samples / "dsifn" / "A" / "0.png"
    assert sniff(jpeg) == "jpeg"
    image = read_image(jpeg)
    assert image.shape == (3, 512, 512) and image.dtype == np.uint8
    assert len(get_dataset("folder", samples / "dsifn", "test")) == 6
