"""Comparisons of models that are not classifiers: small Keras models of each task, trained here, and multi-output
graphs, measured output by output; the classifier path keeps its numbers and gains per-output fidelity."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from quant_core import ArtifactCache, CompareOptions, CompareRequest, CompareResult, Mode, Recipe, run_compare
from quant_core.tasks import Role, Task

SIDE = 32


def _squares(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Dark photos with one bright square each, and the square's centre (x, y) in pixels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(n, SIDE, SIDE, 3)).astype(np.uint8)
    centres = np.zeros((n, 2), np.float32)
    for k in range(n):
        size = int(rng.integers(8, 14))
        y, x = (int(v) for v in rng.integers(0, SIDE - size, size=2))
        images[k, y:y + size, x:x + size] = rng.integers(180, 255, size=3)
        centres[k] = (x + size / 2, y + size / 2)
    return images, centres


@pytest.fixture(scope="module")
def square_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("squares")
    images, centres = _squares(12, seed=1)
    for k, pixels in enumerate(images):
        Image.fromarray(pixels).save(folder / f"square_{k:02d}.png")
    truth = _truth(folder)
    (truth / "masks").mkdir(parents=True)
    for k, pixels in enumerate(images):  # the true masks: the bright squares, 0/255
        Image.fromarray(((pixels.mean(-1) > 120) * 255).astype(np.uint8)).save(truth / "masks" / f"square_{k:02d}.png")
    points = {f"square_{k:02d}": [[float(x), float(y)], [float(x) + 1, float(y) + 1]]
              for k, (x, y) in enumerate(centres)}
    (truth / "points.json").write_text(json.dumps(points))
    return folder


def _truth(images):
    """Where the squares' ground truth is kept: masks/ (PNGs named like the images) and points.json."""
    return images.with_name(images.name + "_truth")


def _train(model, x: np.ndarray, y, epochs: int):
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A segmenter, a landmark regressor, an embedder and a two-headed model, trained briefly on squares."""
    import keras

    keras.utils.set_random_seed(0)
    images, centres = _squares(256, seed=0)
    x = images.astype(np.float32) / 255.0
    masks = (images.mean(-1, keepdims=True) > 120).astype(np.float32)
    folder = tmp_path_factory.mktemp("task_models")
    inputs = keras.Input((SIDE, SIDE, 3))
    hidden = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    mask = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="segment_mask")(hidden)
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(16, 3, strides=2, activation="relu")(hidden))
    points = keras.layers.Dense(4, name="landmarks")(keras.layers.Dense(32, activation="relu")(pooled))
    embedding = keras.layers.Dense(32, name="embedding")(pooled)
    paths = {}
    for name, outputs, targets in (("segmenter", mask, masks),
                                   ("landmarker", points, np.concatenate([centres, centres + 1.0], axis=1)),
                                   ("two_heads", [points, mask], [np.concatenate([centres, centres + 1.0], 1), masks])):
        model = _train(keras.Model(inputs, outputs), x, targets, epochs=15)
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
    paths["embedder"] = folder / "embedder.keras"
    keras.Model(inputs, embedding).save(paths["embedder"])
    return paths


def _compare(model, images, tmp_path, *modes: Mode, **options) -> CompareResult:
    recipes = tuple(Recipe(m, calibration_count=12) for m in modes)
    return run_compare(CompareRequest(str(model), (str(images),), None, CompareOptions(
        recipes=recipes, measure_latency=False, **options)), cache=ArtifactCache(tmp_path))


def test_a_segmenter_is_compared_by_its_masks(models, square_dir, tmp_path):
    result = _compare(models["segmenter"], square_dir, tmp_path, Mode.DYNAMIC_RANGE, Mode.INT8)
    assert result.task is Task.SEGMENTATION and [s.role for s in result.output_specs] == [Role.MASK]
    assert "segment_mask" in result.output_specs[0].description and result.class_names == ()
    float32, int8 = result.variant("float32"), result.variant("int8")
    assert float32.top1_agreement == 1.0 and float32.outputs[0].mask.iou == 1.0
    assert int8.ok and int8.top1_agreement == int8.outputs[0].mask.iou > 0.8
    assert int8.outputs[0].whole.sqnr_db > 15 and int8.top1 == () and int8.accuracy is None
    view = int8.views[0]
    assert view.role is Role.MASK and len(view.images) == 12 and view.images[0].mask().shape == (SIDE, SIDE)
    ones = [v.mask().sum() for v in float32.views[0].images]
    assert all(50 <= n <= 250 for n in ones), ones  # about each photo's square (8 to 13 px a side), not the dark rest
    again = CompareResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result


def test_a_landmark_model_is_compared_by_its_points(models, square_dir, tmp_path):
    result = _compare(models["landmarker"], square_dir, tmp_path, Mode.INT8)
    assert result.task is Task.LANDMARKS, [s.description for s in result.output_specs]
    spec = result.output_specs[0]
    assert spec.points == 2 and spec.coords == 2
    int8 = result.variant("int8")
    lm = int8.outputs[0].landmarks
    assert lm.mean_error is not None and lm.mean_error < 1.0 and int8.top1_agreement == lm.pck_5
    assert len(int8.views[0].images[0].points) == 2


def test_an_embedder_is_compared_by_cosine_and_neighbours(models, square_dir, tmp_path):
    result = _compare(models["embedder"], square_dir, tmp_path, Mode.INT8)
    assert result.task is Task.EMBEDDING
    emb = result.variant("int8").outputs[0].embedding
    assert emb.mean_cosine > 0.99 and emb.nn_agreement is not None
    assert result.variant("int8").top1_agreement == emb.nn_agreement


def test_an_embedders_class_folders_are_not_read_as_its_classes(models, square_dir, tmp_path):
    """Its [1, 32] output has the shape of 32 class scores: 33 class folders were refused, and fewer chose its
    normalization by the "accuracy" of its vectors' largest component."""
    from quant_core.inputs.preprocess import PreprocessingOverride
    from quant_core.serving.client import JobClient
    from quant_core.serving.protocol import DescribeJob, Place

    foldered = tmp_path / "foldered"
    for k, photo in enumerate(sorted(square_dir.glob("*.png")) * 3):
        (foldered / f"person_{k:02d}").mkdir(parents=True)
        shutil.copy(photo, foldered / f"person_{k:02d}" / photo.name)
    assert len(list(foldered.iterdir())) == 36 > 32
    result = _compare(models["embedder"], foldered, tmp_path / "cache", Mode.INT8)
    assert result.task is Task.EMBEDDING and result.labels_source.startswith("not used")
    assert all(i.label_index is None for i in result.images) and not result.labelled
    plain = _compare(models["embedder"], square_dir, tmp_path / "cache", Mode.INT8)
    assert result.preprocessing == plain.preprocessing  # chosen from the images alone, folders or not
    assert result.variant("int8").outputs[0].embedding.mean_cosine == pytest.approx(
        plain.variant("int8").outputs[0].embedding.mean_cosine, abs=1e-3)  # the same 36 photos, 12 unique
    said = JobClient.in_process().run(DescribeJob(str(models["embedder"]), (str(foldered),), None,
                                                  PreprocessingOverride(), Place(str(tmp_path / "cache"))))
    assert said.task is Task.EMBEDDING and said.labels_source.startswith("not used")
    assert said.class_counts == (("unlabelled", 36),)


def test_a_classifiers_class_folders_are_still_its_labels(model_files, image_dir, labels_file, tmp_path):
    result = _compare(model_files["keras"], image_dir, tmp_path, Mode.FLOAT16)
    assert result.task is Task.CLASSIFICATION and result.labelled


def test_a_two_headed_model_is_measured_on_both_outputs_whatever_their_order(models, square_dir, tmp_path):
    result = _compare(models["two_heads"], square_dir, tmp_path, Mode.DYNAMIC_RANGE)
    roles = sorted(s.role.value for s in result.output_specs)
    assert roles == ["landmarks", "mask"] and result.task is Task.LANDMARKS  # points outrank the mask
    assert result.variant("float32").ok  # the float32 .tflite reproduces the Keras model output by output
    assert [o.name for o in result.variant("dynamic_range").outputs] == [s.name for s in result.output_specs]
    assert {v.role for v in result.variant("dynamic_range").views} == {Role.MASK, Role.LANDMARKS}


def test_the_task_and_roles_can_be_overridden(models, square_dir, tmp_path):
    generic = _compare(models["segmenter"], square_dir, tmp_path, Mode.FLOAT16, task=Task.GENERIC)
    assert generic.task is Task.GENERIC and generic.variant("float16").views == ()
    assert generic.variant("float16").top1_agreement == pytest.approx(1.0, abs=1e-3)  # cosine
    named = _compare(models["segmenter"], square_dir, tmp_path, Mode.FLOAT16, roles=(("segment_mask", Role.GENERIC),))
    assert named.output_specs[0].role is Role.GENERIC and named.output_specs[0].set_by_user


def test_a_classifier_keeps_its_numbers_and_gains_per_output_fidelity(model_files, image_dir, labels_file, tmp_path):
    result = run_compare(CompareRequest(str(model_files["keras"]), (str(image_dir),), str(labels_file), CompareOptions(
        recipes=(Recipe(Mode.INT8),), measure_latency=False)), cache=ArtifactCache(tmp_path))
    assert result.task is Task.CLASSIFICATION and result.output_specs[0].role is Role.CLASS_SCORES
    int8 = result.variant("int8")
    assert int8.top1 and int8.accuracy is not None and int8.views == ()
    fidelity = int8.outputs[0]
    assert fidelity.role is Role.CLASS_SCORES and len(fidelity.channels) == 3  # one per class
    assert fidelity.whole.sqnr_db > 10


def test_ground_truth_masks_and_points_give_a_non_classifier_its_accuracy(models, square_dir, tmp_path):
    truth = _truth(square_dir)
    masks = _compare(models["segmenter"], square_dir, tmp_path, Mode.INT8, truth=(str(truth / "masks"),))
    assert masks.labelled and masks.truth_source == "12 ground-truth masks"
    assert 0.5 < masks.source_accuracy <= 1.0 and masks.variant("float32").accuracy == pytest.approx(
        masks.source_accuracy, abs=1e-6)
    assert abs(masks.variant("int8").accuracy - masks.source_accuracy) < 0.1
    from quant_core.results.summary import summarize

    shown = summarize(masks)
    column = next(c for c in shown.columns if c.title == "vs ground truth")
    assert shown.value(shown.rows[1], column) == pytest.approx(masks.variant("int8").accuracy, abs=1e-3)
    points = _compare(models["landmarker"], square_dir, tmp_path, Mode.INT8, truth=(str(truth / "points.json"),))
    assert points.truth_source == "ground-truth points of 12 images" and 0.0 <= points.variant("int8").accuracy <= 1.0


def test_ground_truth_that_does_not_fit_is_refused_in_one_line(models, square_dir, tmp_path):
    from quant_core.errors import InputError

    truth = _truth(square_dir)
    partial = tmp_path / "partial"
    partial.mkdir()
    for path in sorted((truth / "masks").glob("*.png"))[:5]:
        (partial / path.name).write_bytes(path.read_bytes())
    with pytest.raises(InputError, match=r"^[^\n]*square_05[^\n]*$"):
        _compare(models["segmenter"], square_dir, tmp_path, Mode.FLOAT16, truth=(str(partial),))
    with pytest.raises(InputError, match="ground truth is for a mask, a class map or landmarks"):
        _compare(models["embedder"], square_dir, tmp_path, Mode.FLOAT16, truth=(str(truth / "points.json"),))
    with pytest.raises(InputError, match="no such file"):
        _compare(models["segmenter"], square_dir, tmp_path, Mode.FLOAT16, truth=(str(tmp_path / "nope"),))
