"""Official tracking metrics (DESIGN.md §2): golden values, per-sequence averaging, invalid frames."""

import numpy as np
import pytest

from tracker_prune.metrics import center_error, iou, normalized_center_error, success_curve, tracking_metrics


def test_perfect_tracker_auc_is_20_over_21():
    gt = [np.array([[10, 10, 20, 20]] * 5, float)]
    m = tracking_metrics(gt, gt)
    assert m["auc"] == pytest.approx(20 / 21)
    assert m["precision"] == 1.0 and m["ao"] == pytest.approx(1.0) and m["sr75"] == 1.0


def test_constant_offset_box_known_curve():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 10, 10]], float)  # overlap 50, union 150 -> IoU 1/3
    assert iou(a, b)[0] == pytest.approx(1 / 3)
    curve = success_curve(np.array([1 / 3]))
    # got10k _calc_curves: ious[:, None] > thr[None, :]
    expected = (np.array([1 / 3])[:, None] > np.linspace(0, 1, 21)[None, :]).mean(0)
    assert np.array_equal(curve, expected)
    assert curve.sum() == 7  # thresholds 0, .05, ..., .30 are below 1/3


def test_bad_metric_input():
    with pytest.raises(ValueError):
        tracking_metrics([], [])


def test_official_metrics_average_sequences_and_skip_invalid_frames():
    g1 = np.array([[0, 0, 10, 10]] * 3, float)
    p1 = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [5, 0, 10, 10]], float)  # IoU 1, 1/3, 1/3
    g2 = np.array([[0, 0, 10, 10]] * 5, float)
    p2 = g2.copy()
    p2[0] = [50, 50, 10, 10]  # frame 0 is replaced by the init box (toolkit: boxes[0] = anno[0])
    m = tracking_metrics([p1, p2], [g1, g2])
    thr = np.linspace(0, 1, 21)
    s1 = np.mean([(v > thr).astype(float) for v in (1.0, 1 / 3, 1 / 3)], 0)
    s2 = (1.0 > thr).astype(float)
    assert m["auc"] == pytest.approx(((s1 + s2) / 2).mean())  # per-sequence curves, averaged
    # centre errors 0, 5, 5 and 0 x5: precision@2px = mean(1/3, 1), @5px = 1
    assert m["precision_2px"] == pytest.approx((1 / 3 + 1) / 2) and m["precision_5px"] == 1.0
    # normalised precision at 0.2: errors 0.5 > 0.2 -> (1/3 + 1) / 2
    assert m["norm_precision"] == pytest.approx((1 / 3 + 1) / 2)
    # AO pools frames 1.. of all sequences
    assert m["ao"] == pytest.approx((1 / 3 + 1 / 3 + 4) / 6)
    # an invalid (absent) frame is left out: only the perfect frames remain in sequence 1
    v = tracking_metrics([p1], [g1], valid=[np.array([True, False, False])])
    assert v["auc"] == pytest.approx(20 / 21) and v["precision_2px"] == 1.0
    # a zero-size ground-truth box (LaSOT's absent frames) is invalid too
    g3 = g1.copy()
    g3[1:] = 0
    assert tracking_metrics([p1], [g3])["auc"] == pytest.approx(20 / 21)
    with pytest.raises(ValueError, match="precision_px"):
        tracking_metrics([p1], [g1], precision_px=2.5)


def test_iou_and_centre_error_by_hand():
    a = np.array([[0, 0, 4, 2]], float)
    b = np.array([[2, 1, 4, 2]], float)  # overlap 2x1 = 2, union 8 + 8 - 2 = 14
    assert iou(a, b)[0] == pytest.approx(2 / 14)
    assert iou(a, np.array([[10, 10, 1, 1]], float))[0] == 0.0  # disjoint
    assert iou(np.zeros((1, 4)), np.zeros((1, 4)))[0] == 0.0  # empty union
    assert center_error(a, b)[0] == pytest.approx(np.hypot(2, 1))
    assert normalized_center_error(a, b)[0] == pytest.approx(np.hypot(2 / 4, 1 / 2))


def test_metric_thresholds_are_strict_and_inclusive_where_official():
    g = np.array([[0, 0, 10, 10]] * 2, float)
    p = np.array([[0, 0, 10, 10], [2, 0, 10, 10]], float)  # frame 1: centre error exactly 2 px
    m = tracking_metrics([p], [g])
    assert m["precision_2px"] == 1.0  # <= 2 px counts (official precision uses <=)
    assert tracking_metrics([p], [g], precision_px=1)["precision"] == 0.5
    half = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], float)  # IoU exactly 0.5 on frame 1
    m = tracking_metrics([half], [g])
    assert m["sr50"] == 0.0 and m["ao"] == pytest.approx(0.5)  # SR uses a strict >
    assert m["precision_20px"] == 1.0 and m["norm_precision"] == 0.5  # 2.5 px / 10 px = 0.25 > 0.2


def test_bad_lengths_and_masks_are_refused():
    g = np.array([[0, 0, 10, 10]] * 3, float)
    with pytest.raises(ValueError, match="3 ground-truth boxes"):
        tracking_metrics([g[:2]], [g])
    with pytest.raises(ValueError, match="one mask"):
        tracking_metrics([g], [g], valid=[None, None])
    with pytest.raises(ValueError, match="shape"):
        tracking_metrics([g], [g], valid=[np.ones(2, bool)])
    with pytest.raises(ValueError, match="no frame with a valid"):
        tracking_metrics([g], [g], valid=[np.zeros(3, bool)])


def test_precision_keys_read_the_right_threshold():
    """Mutation survivors: `precision_2px` must read the 2-px point of the curve and the default
    `precision` must be 2 px; a centre error of 2.5 px separates 2 from 3 px."""
    g = np.array([[0, 0, 10, 10]] * 2, float)
    p = np.array([[0, 0, 10, 10], [2.5, 0, 10, 10]], float)
    m = tracking_metrics([p], [g])
    assert m["precision_2px"] == 0.5 and m["precision"] == 0.5
    assert tracking_metrics([p], [g], precision_px=3)["precision"] == 1.0
    q = np.array([[0, 0, 10, 10], [5.5, 0, 10, 10]], float)  # 5.5 px: fails at 5, passes at 6
    assert tracking_metrics([q], [g])["precision_5px"] == 0.5


def test_ao_pairs_each_frame_with_its_own_ground_truth():
    """Mutation survivor: AO must compare prediction t with ground truth t (frames 1..)."""
    g = np.array([[0, 0, 10, 10]] * 4, float)
    p = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 10, 10], [0, 0, 10, 5]], float)  # IoU 1, 1/3, 1/2
    m = tracking_metrics([p], [g])
    assert m["ao"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert m["sr50"] == pytest.approx(1 / 3) and m["sr75"] == pytest.approx(1 / 3)


def test_iou_uses_width_for_x_and_height_for_y_on_both_boxes():
    """Mutation survivor: the second box's right edge is x + w (not x + h)."""
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[4, 0, 2, 8]], float)  # inside a: inter = 2 * 8 = 16, union = 100
    assert iou(a, b)[0] == pytest.approx(0.16) and iou(b, a)[0] == pytest.approx(0.16)


def test_precision_20px_reads_the_20px_point():
    g = np.array([[0, 0, 10, 10]] * 2, float)
    p = np.array([[0, 0, 10, 10], [20.5, 0, 10, 10]], float)
    assert tracking_metrics([p], [g])["precision_20px"] == 0.5
