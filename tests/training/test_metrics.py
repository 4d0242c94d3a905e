"""ConfusionMatrix: hand-computed scores on constructed masks, empty masks, ignore=255, ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist

from backend.errors import InputError
from training.evaluation.metrics import ConfusionMatrix


def _masks() -> tuple[np.ndarray, np.ndarray]:
    # 4 x 4: truth has 6 change pixels, prediction 5; they share 4.
    truth = np.zeros((4, 4), dtype=np.uint8)
    truth[0, :4] = 1
    truth[1, :2] = 1
    pred = np.zeros((4, 4), dtype=np.uint8)
    pred[0, 1:4] = 1
    pred[1, 0] = 1
    pred[3, 3] = 1
    return pred, truth


def test_hand_computed_values() -> None:
    pred, truth = _masks()
    scores = ConfusionMatrix().update(pred, truth).as_dict()
    # TP 4 (row 0 cols 1-3, row 1 col 0), FP 1 ((3,3)), FN 2 ((0,0), (1,1)), TN 9.
    assert (scores["tp"], scores["fp"], scores["fn"], scores["tn"]) == (4, 1, 2, 9)
    assert scores["precision"] == pytest.approx(4 / 5)
    assert scores["recall"] == pytest.approx(4 / 6)
    assert scores["f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 2))
    assert scores["f1"] == pytest.approx(2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6))  # harmonic mean
    assert scores["iou"] == pytest.approx(4 / 7)
    assert scores["oa"] == pytest.approx(13 / 16)


def test_ignore_255_is_not_counted() -> None:
    pred, truth = _masks()
    truth = truth.copy()
    truth[3, :] = 255  # drops the FP at (3, 3) and three TNs
    scores = ConfusionMatrix().update(pred, truth).as_dict()
    assert (scores["tp"], scores["fp"], scores["fn"], scores["tn"]) == (4, 0, 2, 6)
    assert scores["precision"] == 1.0
    assert scores["oa"] == pytest.approx(10 / 12)


def test_global_matrix_sums_images_not_means() -> None:
    a = ConfusionMatrix().update(np.array([[1, 1]]), np.array([[1, 1]]))  # perfect, 2 change pixels
    b = ConfusionMatrix().update(np.array([[0, 0, 0, 0]]), np.array([[1, 1, 1, 1]]))  # all missed
    total = a.merge(b).as_dict()
    assert total["recall"] == pytest.approx(2 / 6)  # per-image mean would give 0.5
    assert total["f1"] == pytest.approx(4 / (4 + 4))


def test_empty_prediction_on_empty_target_is_perfect() -> None:
    zeros = np.zeros((3, 3), dtype=np.uint8)
    scores = ConfusionMatrix().update(zeros, zeros).as_dict()
    for key in ("oa", "iou", "f1", "precision", "recall"):
        assert scores[key] == 1.0


def test_empty_prediction_on_changed_target_scores_zero() -> None:
    truth = np.zeros((3, 3), dtype=np.uint8)
    truth[1, 1] = 1
    scores = ConfusionMatrix().update(np.zeros_like(truth), truth).as_dict()
    assert (scores["precision"], scores["recall"], scores["f1"], scores["iou"]) == (0.0, 0.0, 0.0, 0.0)
    assert scores["oa"] == pytest.approx(8 / 9)


def test_prediction_on_empty_target_scores_zero() -> None:
    pred = np.zeros((3, 3), dtype=np.uint8)
    pred[0, 0] = 1
    scores = ConfusionMatrix().update(pred, np.zeros_like(pred)).as_dict()
    assert (scores["precision"], scores["recall"], scores["f1"], scores["iou"]) == (0.0, 0.0, 0.0, 0.0)


def test_nothing_counted_is_defined() -> None:
    scores = ConfusionMatrix().update(np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8)).as_dict()
    assert scores["oa"] == 1.0 and scores["f1"] == 1.0 and scores["tp"] == 0


def test_tensors_and_bool_predictions_match_numpy() -> None:
    pred, truth = _masks()
    from_numpy = ConfusionMatrix().update(pred.astype(bool), truth).as_dict()
    from_torch = ConfusionMatrix().update(torch.from_numpy(pred), torch.from_numpy(truth).long()).as_dict()
    assert from_numpy == from_torch


@pytest.mark.parametrize(
    ("pred", "target"),
    [
        (np.array([[2, 0]]), np.array([[1, 0]])),  # prediction not 0/1
        (np.array([[1, 0]]), np.array([[7, 0]])),  # target not 0/1/255
        (np.array([[1, 0, 1]]), np.array([[1, 0]])),  # shapes differ
    ],
)
def test_bad_values_are_refused(pred: np.ndarray, target: np.ndarray) -> None:
    with pytest.raises(InputError):
        ConfusionMatrix().update(pred, target)


def test_all_reduce_without_process_group_is_a_no_op() -> None:
    pred, truth = _masks()
    matrix = ConfusionMatrix().update(pred, truth)
    assert matrix.all_reduce().tp == 4


def test_all_reduce_sums_over_ranks(tmp_path) -> None:
    # One gloo rank exercises the real call quickly; test_all_reduce_two_ranks runs two.
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        pred, truth = _masks()
        matrix = ConfusionMatrix().update(pred, truth).all_reduce()
        assert (matrix.tp, matrix.fp, matrix.fn, matrix.tn) == (4, 1, 2, 9)
        assert matrix.matrix.dtype == np.int64
    finally:
        dist.destroy_process_group()


def _two_rank_worker(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        pred, truth = _masks()
        if rank == 1:
            pred = np.zeros_like(pred)  # rank 1 misses all 6 change pixels
        matrix = ConfusionMatrix().update(pred, truth).all_reduce()
        np.save(f"{out}-{rank}.npy", matrix.matrix)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_two_ranks(tmp_path) -> None:
    import torch.multiprocessing as mp

    out = str(tmp_path / "matrix")
    mp.spawn(_two_rank_worker, args=(str(tmp_path / "store"), out), nprocs=2, join=True)
    expected = np.array([[9 + 10, 1 + 0], [2 + 6, 4 + 0]])
    for rank in (0, 1):
        assert (np.load(f"{out}-{rank}.npy") == expected).all()
