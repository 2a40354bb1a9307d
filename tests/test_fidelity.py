"""Fidelity of a variant's outputs to float32's: tensor figures, per channel, and each task's own figures.

Known answers are worked out by hand on small arrays; quantization error is simulated the way
an int8 tensor with one scale rounds it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from quant_core._serde import from_jsonable, to_jsonable
from quant_core.fidelity import (
    EmbeddingMetrics,
    LandmarkMetrics,
    MaskMetrics,
    OutputFidelity,
    TensorFidelity,
    heatmap_points,
)
from quant_core.tasks import CoordSpace, Role, infer_outputs, with_roles


def _fake_int8(values: np.ndarray) -> np.ndarray:
    """What one int8 scale for the whole tensor does to it: rounds to 255 steps over its range."""
    low, high = float(values.min()), float(values.max())
    scale = (high - low) / 255
    return np.round((values - low) / scale) * scale + low


# ----------------------------------------------------------------------------------------------- tensors


def test_sqnr_cosine_max_and_relative_rmse_of_a_known_noise():
    reference = np.full((10, 100), 2.0)
    noise = np.where(np.arange(1000).reshape(10, 100) % 2 == 0, 0.02, -0.02)
    fid = TensorFidelity.of(reference, reference + noise)
    assert fid.sqnr_db == pytest.approx(40.0)  # 10 log10(1000 * 4 / (1000 * 0.0004))
    assert fid.rel_rmse == pytest.approx(0.01)  # sqrt(0.0004) / 2
    assert fid.max_abs == pytest.approx(0.02)
    assert fid.cosine == pytest.approx(4000 / math.sqrt(4000 * 4000.4))  # the ± noise cancels in the dot product
    assert not fid.exact and fid.nonfinite == 0


def test_identical_outputs_are_exact_with_no_finite_sqnr_to_store():
    values = np.random.default_rng(0).normal(size=(3, 8))
    fid = TensorFidelity.of(values, values.copy())
    assert (fid.exact, fid.sqnr_db, fid.cosine, fid.max_abs, fid.rel_rmse) == (True, None, 1.0, 0.0, 0.0)
    assert fid.rank == math.inf
    zeros = TensorFidelity.of(np.zeros(4), np.zeros(4))
    assert (zeros.exact, zeros.cosine, zeros.rel_rmse) == (True, 1.0, 0.0)


def test_more_noise_gives_a_lower_sqnr_by_20_db_per_tenfold():
    rng = np.random.default_rng(1)
    reference, noise = rng.normal(size=(5, 64)), rng.normal(size=(5, 64))
    sqnrs = [TensorFidelity.of(reference, reference + k * noise).sqnr_db for k in (0.001, 0.01, 0.1, 1.0, 10.0)]
    assert all(s is not None for s in sqnrs) and sqnrs == sorted(sqnrs, reverse=True)
    assert np.diff(np.array(sqnrs, dtype=float)) == pytest.approx([-20.0] * 4)


def test_a_zero_reference_or_a_nan_leaves_undefined_figures_as_none_and_ranks_them_worst():
    silent = TensorFidelity.of(np.zeros(4), np.array([0.0, 0.1, 0.0, 0.0]))
    assert (silent.sqnr_db, silent.rel_rmse, silent.cosine, silent.max_abs) == (None, None, 0.0, pytest.approx(0.1))
    assert silent.rank == -math.inf and not silent.exact
    broken = TensorFidelity.of(np.ones(4), np.array([1.0, np.nan, np.inf, 1.0]))
    assert broken.nonfinite == 2 and (broken.sqnr_db, broken.cosine, broken.max_abs, broken.rel_rmse) == (None,) * 4


def test_a_probability_beside_coordinates_in_one_tensor_is_the_worst_channel():
    """One int8 scale over [x, y, z, p]: coordinates up to 190 px leave the probability two steps."""
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.uniform(0, 190, (20, 3)), rng.uniform(0, 1, (20, 1))], axis=1)
    reference = values.reshape(20, 1, 1, 4)
    spec = infer_outputs([("Identity", (1, 1, 1, 4)), ("s", (1, 1))], [reference, values[:, :1]],
                         input_hw=(192, 192))[0]
    spec = with_roles((spec,), {0: Role.GENERIC})[0]
    fid = OutputFidelity.of(spec, reference, _fake_int8(reference), input_hw=(192, 192))
    assert len(fid.channels) == 4 and fid.worst_channel == 3
    sqnr = [c.sqnr_db for c in fid.channels]
    assert all(s is not None for s in sqnr)
    assert sqnr[3] < min(sqnr[:3]) - 20  # the probability stands out by far
    assert fid.whole.sqnr_db is not None and fid.whole.sqnr_db > sqnr[3]


# ----------------------------------------------------------------------------------------------- masks


def _mask(rows: list[str]) -> np.ndarray:
    """A [H, W] 0/1 array from rows of '#' (foreground) and '.'."""
    return np.array([[c == "#" for c in row] for row in rows], dtype=np.float64)


def test_mask_iou_and_pixel_agreement_by_hand():
    ref = _mask(["##..", "##..", "....", "...."])  # 4 foreground pixels
    got = _mask(["###.", "##..", "#...", "...."])  # the same 4 and 2 more: IoU 4/6, 2 of 16 pixels differ
    empty = np.zeros((4, 4))
    m = MaskMetrics.of(np.stack([ref, empty])[..., None] * 0.9, np.stack([got, empty])[..., None] * 0.8)
    assert m.per_image_iou == (pytest.approx(4 / 6), 1.0)  # both empty: nothing disagrees
    assert m.iou == pytest.approx((4 / 6 + 1) / 2)
    assert m.per_image_agreement == (pytest.approx(14 / 16), 1.0)
    assert m.pixel_agreement == pytest.approx((14 / 16 + 1) / 2)
    assert m.class_iou == ()


def test_a_logit_mask_is_split_at_its_threshold():
    ref = np.array([[[-3.0], [2.0]], [[0.5], [-0.1]]])[None]  # [1, 2, 2, 1]
    got = np.array([[[-2.0], [1.0]], [[-0.5], [-0.3]]])[None]
    assert MaskMetrics.of(ref, got, threshold=0.0).iou == pytest.approx(1 / 2)
    assert MaskMetrics.of(ref, got).iou == 1.0  # at 0.5 the 0.5 falls out: {2.0} and {1.0}, the same pixel


def test_class_map_iou_per_class_pooled_over_images_and_their_mean():
    one_hot = np.eye(4)
    ref = one_hot[np.array([[[0, 0, 1], [1, 2, 2]]])]  # [1, 2, 3, 4]: class 3 nowhere
    got = one_hot[np.array([[[0, 1, 1], [1, 2, 0]]])]
    m = MaskMetrics.of(ref, got)
    # class 0: ref {0,1} got {0,5} -> 1/3; class 1: ref {2,3} got {1,2,3} -> 2/3; class 2: ref {4,5} got {4} -> 1/2
    assert m.class_iou == (pytest.approx(1 / 3), pytest.approx(2 / 3), pytest.approx(1 / 2), None)
    assert m.iou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert m.pixel_agreement == pytest.approx(4 / 6)


def test_masks_against_ground_truth():
    truth = np.array([[[1, 1], [0, 0]]])
    got = np.array([[[0.9], [0.2]], [[0.7], [0.1]]])[None]  # labels [[1, 0], [1, 0]]
    m = MaskMetrics.against_truth(got, truth)
    assert m.iou == pytest.approx(1 / 3) and m.pixel_agreement == pytest.approx(0.5)
    with pytest.raises(ValueError, match="does not match"):
        MaskMetrics.against_truth(got, np.zeros((1, 3, 2)))


# ----------------------------------------------------------------------------------------------- landmarks


def test_point_error_share_and_pck_by_hand():
    # Input 100 high, 200 wide: the larger side is 200 px, 5 % of it 10 px.
    ref = np.array([[[10.0, 10.0, 0.0], [50.0, 50.0, 0.0]]])  # z differs below and is ignored
    got = np.array([[[13.0, 14.0, 9.0], [50.0, 61.0, -9.0]]])  # distances 5 and 11
    m = LandmarkMetrics.of(ref.reshape(1, 6), got.reshape(1, 6), input_hw=(100, 200), coords=3)
    assert m.mean_error == pytest.approx(8.0) and m.mean_error_share == pytest.approx(0.04)
    assert m.pck_5 == pytest.approx(0.5) and m.per_image_pck == (pytest.approx(0.5),)
    assert m.per_point_error == (pytest.approx(5.0), pytest.approx(11.0)) and m.worst_point == 1


def test_normalised_points_are_measured_in_input_pixels_and_unknown_units_get_no_share():
    ref = np.array([[0.5, 0.5]])
    got = np.array([[0.53, 0.54]])  # 0.03 * 200 = 6 px across, 0.04 * 100 = 4 px down
    m = LandmarkMetrics.of(ref, got, input_hw=(100, 200), coords=2, space=CoordSpace.NORMALIZED)
    assert m.mean_error == pytest.approx(math.hypot(6, 4))
    unknown = LandmarkMetrics.of(ref, got, input_hw=(100, 200), coords=2, space=CoordSpace.UNKNOWN)
    assert unknown.mean_error == pytest.approx(0.05) and (unknown.mean_error_share, unknown.pck_5) == (None, None)


def test_a_nan_point_has_no_mean_error_and_misses_pck():
    m = LandmarkMetrics.of(np.array([[1.0, 1.0, 5.0, 5.0]]), np.array([[1.0, 1.0, np.nan, 5.0]]),
                           input_hw=(100, 100), coords=2)
    assert m.mean_error is None and m.pck_5 == 0.5 and m.worst_point == 1


def test_points_against_ground_truth_in_input_pixels():
    got = np.array([[0.1, 0.1, 0.5, 0.5]])  # normalised, input 100 x 100
    truth = np.array([[[10.0, 13.0], [50.0, 50.0]]])
    m = LandmarkMetrics.against_truth(got, truth, input_hw=(100, 100), coords=2, space=CoordSpace.NORMALIZED)
    assert m.per_point_error == (pytest.approx(3.0), pytest.approx(0.0)) and m.pck_5 == 1.0


def test_heatmap_peaks_become_points_at_cell_centres_in_input_pixels():
    maps = np.zeros((1, 8, 8, 2))
    maps[0, 2, 5, 0] = 1.0
    maps[0, 7, 0, 1] = 3.0
    points = heatmap_points(maps, input_hw=(64, 32))
    assert points.tolist() == [[[5.5 * 4, 2.5 * 8], [0.5 * 4, 7.5 * 8]]]


# ----------------------------------------------------------------------------------------------- embeddings


def _at(*degrees: float) -> np.ndarray:
    """Unit vectors at these angles: cosine similarity falls as angles part."""
    radians = np.radians(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def test_embedding_cosines_and_nearest_neighbour_agreement():
    ref = _at(0, 10, 50, 60, 120, 130)  # neighbours in pairs: 0-1, 2-3, 4-5
    same = EmbeddingMetrics.of(ref, ref * 3)  # scale does not change direction
    assert same.mean_cosine == pytest.approx(1.0) and same.nn_agreement == 1.0
    m = EmbeddingMetrics.of(ref, _at(57, 10, 50, 60, 120, 130))
    # Image 0 moves to 57°: its neighbour is 3 (3° away), 3's is 0, 2's is 0 (7°), 1's is 2 (40°); 4 and 5 keep theirs.
    assert m.nn_agreement == pytest.approx(2 / 6)
    assert m.per_image_cosine[0] == pytest.approx(math.cos(math.radians(57)))
    assert m.min_cosine == m.per_image_cosine[0] and m.per_image_cosine[1:] == (pytest.approx(1.0),) * 5
    assert EmbeddingMetrics.of(ref[:2], ref[:2]).nn_agreement is None  # under 3 images: no neighbours to compare


def test_nearest_neighbours_taken_a_few_rows_at_a_time_are_those_of_the_whole_matrix():
    from quant_core.fidelity import _nearest

    vectors = np.random.default_rng(6).normal(size=(11, 4))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T - 10 * np.eye(11)  # never the image itself
    assert _nearest(vectors, chunk=3).tolist() == np.argmax(similarity, axis=1).tolist()


def test_a_zero_embedding_has_cosine_zero_and_a_nan_one_none():
    m = EmbeddingMetrics.of(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [0.0, 0.0]]))
    assert m.per_image_cosine == (0.0, 1.0)
    nan = EmbeddingMetrics.of(np.ones((3, 2)), np.array([[1.0, np.nan], [1.0, 1.0], [1.0, 1.0]]))
    assert nan.per_image_cosine[0] is None and (nan.mean_cosine, nan.nn_agreement) == (None, None)


# ----------------------------------------------------------------------------------------------- one output per role


def _outputs() -> tuple[tuple, list[np.ndarray]]:
    """A pose-like model: landmarks, a score, a sigmoid mask, heatmaps, an embedding; 4 images."""
    rng = np.random.default_rng(3)
    xy = rng.uniform(10, 50, (4, 5, 2))
    landmarks = np.concatenate([xy, rng.normal(0, 5, (4, 5, 1))], axis=2).reshape(4, 15)
    heatmaps = rng.normal(0, 1, (4, 8, 8, 5))
    mask = 1 / (1 + np.exp(-rng.normal(0, 3, (4, 64, 64, 1))))
    return ((("Identity", (1, 15)), ("Identity_1", (1, 1)), ("Identity_2", (1, 64, 64, 1)),
             ("Identity_3", (1, 8, 8, 5)), ("Identity_4", (1, 32))),
            [landmarks, rng.uniform(0, 1, (4, 1)), mask, heatmaps, rng.normal(0, 1, (4, 32))])


def test_each_role_gets_its_task_figures_and_a_breakdown():
    outputs, samples = _outputs()
    specs = infer_outputs(outputs, samples, input_hw=(64, 64))
    assert [s.role for s in specs] == [Role.LANDMARKS, Role.SCORE, Role.MASK, Role.HEATMAPS, Role.EMBEDDING]
    rng = np.random.default_rng(4)
    got = [s + rng.normal(0, 0.01, s.shape) for s in samples]
    got[0] = samples[0].copy()
    got[0][:, 3 * 2 + 2] += 4.0  # point 2's z only
    fids = [OutputFidelity.of(spec, ref, out, input_hw=(64, 64)) for spec, ref, out in zip(specs, samples, got)]
    landmarks, score, mask, heatmaps, embedding = fids
    assert len(landmarks.channels) == 5 and len(landmarks.axes) == 3
    assert (landmarks.worst_channel, landmarks.worst_axis) == (2, 2)
    assert landmarks.landmarks is not None and landmarks.landmarks.mean_error == 0.0  # z is not a point error
    assert [c.exact for c in landmarks.axes] == [True, True, False]
    assert (score.mask, score.landmarks, score.embedding) == (None, None, None) and len(score.channels) == 1
    assert mask.mask is not None and mask.mask.iou > 0.95 and len(mask.channels) == 1
    assert heatmaps.landmarks is not None and len(heatmaps.channels) == 5
    assert embedding.embedding is not None and embedding.embedding.mean_cosine == pytest.approx(1.0, abs=1e-3)


def test_identical_outputs_score_perfectly_on_every_figure():
    outputs, samples = _outputs()
    specs = infer_outputs(outputs, samples, input_hw=(64, 64))
    for spec, ref in zip(specs, samples):
        fid = OutputFidelity.of(spec, ref, ref.copy(), input_hw=(64, 64))
        assert fid.whole.exact and all(c.exact for c in fid.channels)
        if fid.mask is not None:
            assert (fid.mask.iou, fid.mask.pixel_agreement) == (1.0, 1.0)
        if fid.landmarks is not None:
            assert (fid.landmarks.mean_error, fid.landmarks.pck_5) == (0.0, 1.0)
        if fid.embedding is not None:
            assert fid.embedding.mean_cosine == pytest.approx(1.0) and fid.embedding.nn_agreement == 1.0
    assert [s.role for s in specs] == [Role.LANDMARKS, Role.SCORE, Role.MASK, Role.HEATMAPS, Role.EMBEDDING]


def test_a_class_map_output_gets_class_ious():
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, (3, 64, 64, 4))
    spec = infer_outputs([("out", (1, 64, 64, 4))], [logits], input_hw=(64, 64))[0]
    assert spec.role is Role.CLASS_MAP
    fid = OutputFidelity.of(spec, logits, logits + rng.normal(0, 0.5, logits.shape), input_hw=(64, 64))
    assert fid.mask is not None and len(fid.mask.class_iou) == 4 and 0.3 < fid.mask.iou < 1.0


def test_every_figure_round_trips_through_strict_json():
    outputs, samples = _outputs()
    specs = infer_outputs(outputs, samples, input_hw=(64, 64))
    got = [s * 1.01 for s in samples]
    got[1] = samples[1].copy()  # exact: sqnr None
    got[4][0, 0] = np.nan  # a broken value: figures None, counted
    fids = tuple(OutputFidelity.of(spec, ref, out, input_hw=(64, 64)) for spec, ref, out in zip(specs, samples, got))
    class_map = MaskMetrics.of(np.eye(3)[[[[0, 1]]]], np.eye(3)[[[[0, 0]]]])
    assert class_map.class_iou[2] is None
    text = json.dumps(to_jsonable((fids, class_map)), allow_nan=False)
    data = json.loads(text)
    assert tuple(from_jsonable(OutputFidelity, item) for item in data[0]) == fids
    assert from_jsonable(MaskMetrics, data[1]) == class_map
    assert fids[1].whole.exact and fids[4].whole.nonfinite == 1
