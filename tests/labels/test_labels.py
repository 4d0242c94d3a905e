"""Labels and prompt filtering, end to end through detect, with a CLIP whose answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely

from backend.errors import ModelFileError
from backend.inference.pipeline import detect
from backend.labels.stage import LABEL_FIELDS
from backend.params import DetectParams
from tests.labels.colour_clip import PATCHES, change_model, colour_labeller, colour_pair
from tests.rasters import UTM_X0, UTM_Y0


def _run(
    tmp_path: Path, prompts: tuple[str, ...] = (), match: str = "appeared", swap: bool = False
) -> dict[str, object]:
    before, after = colour_pair(tmp_path / "pair")
    if swap:
        before, after = after, before
    out = tmp_path / f"out-{'-'.join(prompts)}-{match}-{swap}"
    params = DetectParams(before=before, after=after, out_dir=out, prompts=prompts, prompt_match=match)
    result = detect(params, loaded=change_model(), labeller=colour_labeller(prompts))
    meta, _, geometry, values = pyogrio.raw.read(out / "changes.gpkg")
    fields = dict(zip(meta["fields"], values, strict=True))
    return {"result": result, "fields": fields, "geoms": shapely.from_wkb(geometry)}


def _by_patch(run: dict[str, object]) -> dict[str, str]:
    """The label of each polygon, keyed by the label the patch under it was built to get."""
    labels: dict[str, str] = {}
    fields, geoms = run["fields"], run["geoms"]
    for rows, cols, _, _, expected in PATCHES:
        x, y = UTM_X0 + 10 * (cols.start + cols.stop) / 2, UTM_Y0 - 10 * (rows.start + rows.stop) / 2
        hits = [i for i, g in enumerate(geoms) if g.contains(shapely.Point(x, y))]  # type: ignore[union-attr]
        if hits:
            labels[expected] = str(fields["label"][hits[0]])  # type: ignore[index]
    return labels


def test_every_polygon_says_what_changed(tmp_path: Path) -> None:
    run = _run(tmp_path)
    result, fields = run["result"], run["fields"]
    assert list(fields)[-5:] == list(LABEL_FIELDS)
    assert _by_patch(run) == {p[4]: p[4] for p in PATCHES}
    assert result.polygons == 3 and result.labelled_with == "colour clip"  # type: ignore[union-attr]
    assert result.labels == {p[4]: 1 for p in PATCHES}  # type: ignore[union-attr]
    before, after = list(fields["class_before"]), list(fields["class_after"])  # type: ignore[index]
    assert sorted(zip(before, after, strict=True)) == sorted(
        [("vegetation", "building"), ("water", "water"), ("building", "water")]
    )
    assert np.all(np.asarray(fields["score_after"]) > 0.5) and np.all(np.asarray(fields["score_before"]) > 0.5)


def test_swapped_dates_swap_the_labels(tmp_path: Path) -> None:
    labels = _by_patch(_run(tmp_path, swap=True))
    assert labels == {
        "vegetation → building": "building → vegetation",
        "water": "water",
        "building → water": "water → building",
    }


@pytest.mark.parametrize(
    ("prompts", "match", "kept"),
    [
        (("building",), "appeared", {"vegetation → building"}),
        (("building",), "disappeared", {"building → water"}),
        (("building",), "either", {"vegetation → building", "building → water"}),
        (("Water ",), "appeared", {"water", "building → water"}),
        (("water",), "disappeared", {"water"}),
        (("water", "vegetation"), "disappeared", {"water", "vegetation → building"}),
        (("road",), "either", set()),
    ],
)
def test_prompts_keep_exactly_the_polygons_built_for_them(
    tmp_path: Path, prompts: tuple[str, ...], match: str, kept: set[str]
) -> None:
    run = _run(tmp_path, prompts, match)
    assert set(_by_patch(run)) == kept
    assert sorted(run["fields"]["label"]) == sorted(kept)  # type: ignore[index]
    assert run["result"].dropped == 3 - len(kept)  # type: ignore[union-attr]


def test_prompts_for_a_model_without_text_need_clip_weights(tmp_path: Path) -> None:
    before, after = colour_pair(tmp_path / "pair")
    out = tmp_path / "out"
    params = DetectParams(before=before, after=after, out_dir=out, prompts=("building",))
    loaded = change_model()
    with pytest.raises(ModelFileError, match=r"need CLIP weights.*clip get openai-vit-b-16.*clip add FILE"):
        detect(params, loaded=loaded)
    assert not out.exists()
    result = detect(DetectParams(before=before, after=after, out_dir=out), loaded=loaded)  # no prompts: runs
    assert result.labels is None and result.polygons == 3
    assert "label" not in pyogrio.read_info(out / "changes.gpkg")["fields"]


def test_crop_windows_are_padded_squares_within_bounds() -> None:
    from affine import Affine

    from backend.labels.crops import MAX_SIDE, MIN_SIDE, square_windows

    transform = Affine(10.0, 0.0, 0.0, 0.0, -10.0, 1000.0)  # 10 m pixels, origin (0, 1000)
    bounds = np.array([[100.0, 500.0, 300.0, 600.0], [0.0, 990.0, 10.0, 1000.0], [0.0, -1e6, 1e6, 1000.0]])
    wide, tiny, huge = square_windows(bounds, transform)
    assert (wide.width, wide.height) == (30, 30)  # 20 px wide box, a quarter of it on each side, square
    assert (wide.col_off + wide.width / 2, wide.row_off + wide.height / 2) == (20, 45)  # centred on the box
    assert tiny.width == tiny.height == MIN_SIDE
    assert huge.width == huge.height == MAX_SIDE
