"""training.data.augment: ChangeCLIP's rotation, flips and per-date photometric distortion on batches."""

from __future__ import annotations

import torch

from training.data.augment import IGNORE, augment, flip, photometric, radiometric, rotate, swap_dates, zoom


def _batch(n: int = 4, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image_a = torch.rand(n, 3, size, size, generator=g)
    image_b = torch.rand(n, 3, size, size, generator=g)
    mask = (torch.rand(n, size, size, generator=g) > 0.5).long()
    return image_a, image_b, mask


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rotation_keeps_masks_in_0_1_255_and_images_in_unit_range() -> None:
    image_a, image_b, mask = _batch()
    mask[0, :2, :2] = IGNORE  # padding from the crop stays ignored wherever it lands
    turned_a, turned_b, turned_mask = rotate(image_a, image_b, mask, _gen(), p=1.0)
    assert turned_mask.dtype == torch.int64 and turned_mask.shape == mask.shape
    assert set(torch.unique(turned_mask).tolist()) <= {0, 1, IGNORE}
    assert bool((turned_mask == IGNORE).any()), "the corners outside the turned square must be ignored"
    for image in (turned_a, turned_b):
        assert image.shape == image_a.shape
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert not torch.equal(turned_a, image_a)


def test_rotation_turns_both_dates_and_the_mask_together() -> None:
    size = 32
    image = torch.zeros(1, 3, size, size)
    image[:, :, 4:12, 4:12] = 1.0  # a bright square in the top-left quadrant
    mask = torch.zeros(1, size, size, dtype=torch.long)
    mask[:, 4:12, 4:12] = 1
    turned_a, turned_b, turned_mask = rotate(image, image.clone(), mask, _gen(3), p=1.0)
    assert torch.equal(turned_a, turned_b)
    bright = turned_a[0, 0] > 0.5
    changed = turned_mask[0] == 1
    assert int(changed.sum()) > 20
    overlap = int((bright & changed).sum()) / int((bright | changed).sum())
    assert overlap > 0.7, f"image and mask turned apart (IoU {overlap:.2f})"


def test_rotation_with_p_0_changes_nothing() -> None:
    image_a, image_b, mask = _batch()
    out = rotate(image_a, image_b, mask, _gen(), p=0.0)
    assert all(torch.equal(x, y) for x, y in zip(out, (image_a, image_b, mask), strict=True))


def test_flips_move_a_marked_pixel_to_the_mirrored_place_in_both_dates_and_the_mask() -> None:
    n, size, (row, col) = 64, 8, (1, 2)
    image_a, image_b = torch.zeros(n, 3, size, size), torch.zeros(n, 3, size, size)
    mask = torch.zeros(n, size, size, dtype=torch.long)
    image_a[:, :, row, col] = 1.0
    image_b[:, :, row, col] = 0.5
    mask[:, row, col] = 1
    out_a, out_b, out_mask = flip(image_a, image_b, mask, _gen(), p=0.5)
    places = {(row, col), (row, size - 1 - col), (size - 1 - row, col), (size - 1 - row, size - 1 - col)}
    seen = set()
    for i in range(n):
        where = [tuple(int(v) for v in idx) for idx in out_mask[i].nonzero()]
        assert len(where) == 1 and where[0] in places
        r, c = where[0]
        assert float(out_a[i, 0, r, c]) == 1.0 and float(out_b[i, 2, r, c]) == 0.5
        assert float(out_a[i].sum()) == 3.0, "the image must move as a whole"
        seen.add(where[0])
    assert seen == places, "over 64 samples every combination of the two flips should occur"


def test_both_flips_at_p_1_mirror_the_pixel_through_the_centre() -> None:
    image_a = torch.zeros(1, 3, 6, 6)
    image_a[0, :, 0, 1] = 1.0
    mask = torch.zeros(1, 6, 6, dtype=torch.long)
    mask[0, 0, 1] = 1
    out_a, _, out_mask = flip(image_a, image_a.clone(), mask, _gen(), p=1.0)
    assert out_mask[0, 5, 4] == 1 and float(out_a[0, :, 5, 4].sum()) == 3.0


def test_photometric_draws_independently_for_each_date() -> None:
    image_a, _, mask = _batch(n=8)
    out_a, out_b, out_mask = augment(image_a, image_a.clone(), mask, _gen())
    assert not torch.equal(out_a, out_b), "the two dates got the same photometric distortion"
    differs = [not torch.equal(out_a[i], out_b[i]) for i in range(8)]
    assert sum(differs) >= 4
    for image in (out_a, out_b):
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert set(torch.unique(out_mask).tolist()) <= {0, 1, IGNORE}


def test_photometric_keeps_images_in_unit_range_and_grey_stays_near_grey() -> None:
    grey = torch.full((16, 3, 4, 4), 0.5)
    out = photometric(grey, _gen(1))
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    spread = (out.max(dim=1).values - out.min(dim=1).values).max()
    assert float(spread) < 1e-4, "hue and saturation must not colour a grey image"
    assert float((out - 0.5).abs().max()) <= 10 / 255 * 1.2 + 0.5 * 0.2 + 1e-6  # brightness then contrast


def test_a_seeded_generator_repeats_and_another_seed_differs() -> None:
    batch = _batch(n=6)
    first = augment(*batch, _gen(7))
    again = augment(*batch, _gen(7))
    other = augment(*batch, _gen(8))
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(first, other, strict=True))


def test_zoom_in_enlarges_a_square_in_both_dates_and_the_mask() -> None:
    size = 64
    image = torch.zeros(8, 3, size, size)
    image[:, :, 28:36, 28:36] = 1.0
    mask = (image[:, 0] > 0.5).long()
    out_a, out_b, out_mask = zoom(image, image.clone(), mask, _gen(), scale=(2.0, 2.0), p=1.0)
    assert torch.equal(out_a, out_b)
    assert set(torch.unique(out_mask).tolist()) <= {0, 1}, "zooming in leaves no border to ignore"
    changed = (out_mask == 1).sum(dim=(1, 2))
    # The 8x8 square becomes 16x16, unless the random window cuts it at the edge.
    assert int(changed.max()) in range(230, 290) and int(changed.max()) >= int(changed.min()) > 0
    bright = out_a[:, 0] > 0.5
    overlap = int((bright & (out_mask == 1)).sum()) / int((bright | (out_mask == 1)).sum())
    assert overlap > 0.8, f"image and mask zoomed apart (IoU {overlap:.2f})"


def test_zoom_out_ignores_the_emptied_border() -> None:
    image_a, image_b, mask = _batch(n=2, size=32)
    out_a, _, out_mask = zoom(image_a, image_b, mask, _gen(), scale=(0.5, 0.5), p=1.0)
    assert bool((out_mask[:, 0, :] == IGNORE).all()) and bool((out_mask[:, 14:18, 14:18] != IGNORE).all())
    assert float(out_a[:, :, 0, :].abs().max()) == 0.0


def test_zoom_off_and_swap_with_p_0_change_nothing_and_draw_nothing() -> None:
    image_a, image_b, mask = _batch()
    generator = _gen()
    state = generator.get_state()
    out = zoom(image_a, image_b, mask, generator, scale=(1.0, 1.0), p=1.0)
    assert all(torch.equal(x, y) for x, y in zip(out, (image_a, image_b, mask), strict=True))
    assert torch.equal(generator.get_state(), state), "an unused option must not shift the reference recipe's draws"
    swapped_a, swapped_b, chosen = swap_dates(image_a, image_b, _gen(), p=0.0)
    assert torch.equal(swapped_a, image_a) and torch.equal(swapped_b, image_b) and not bool(chosen.any())


def test_swap_dates_exchanges_exactly_the_chosen_samples() -> None:
    image_a, image_b, _ = _batch(n=64)
    out_a, out_b, chosen = swap_dates(image_a, image_b, _gen(), p=0.5)
    assert 10 < int(chosen.sum()) < 54
    for row in range(64):
        expected = (image_b[row], image_a[row]) if chosen[row] else (image_a[row], image_b[row])
        assert torch.equal(out_a[row], expected[0]) and torch.equal(out_b[row], expected[1])


def test_radiometric_at_strength_0_or_p_0_changes_nothing() -> None:
    image, _, _ = _batch(n=4)
    assert torch.equal(radiometric(image, _gen(), 0.0), image)
    assert torch.equal(radiometric(image, _gen(), 0.3, p=0.0), image)


def test_radiometric_changes_about_half_the_samples_within_unit_range() -> None:
    image = torch.full((16, 3, 32, 32), 0.4)
    out = radiometric(image, _gen(2), 0.3)
    changed = [not torch.equal(out[i], image[i]) for i in range(16)]
    assert 3 <= sum(changed) <= 13
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_radiometric_gain_varies_across_the_crop_and_between_bands() -> None:
    """A flat grey crop comes out with smooth patches: its bands and its corners differ."""
    image = torch.full((8, 3, 64, 64), 0.4)
    out = radiometric(image, _gen(3), 0.3, p=1.0)
    corners = out[:, :, :8, :8].mean(dim=(2, 3)) - out[:, :, -8:, -8:].mean(dim=(2, 3))
    assert float(corners.abs().max()) > 0.02, "the gain field is flat"
    bands = out.mean(dim=(2, 3))
    assert float((bands[:, 0] - bands[:, 2]).abs().max()) > 0.02, "every band got the same gain"
    neighbours = (out[..., 1:] - out[..., :-1]).abs().max()
    assert float(neighbours) < 0.04, "the gain field is not smooth"  # per-pixel gains would reach ~0.2
