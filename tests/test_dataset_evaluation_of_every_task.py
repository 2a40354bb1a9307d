"""Whole-dataset evaluation of models that are not classifiers, checked against the same figures on all images at once.

The landmark model is the bundled MediaPipe face landmarker (two outputs: 468 points and a
presence score) on 20 altered copies of its bundled face crops, in two folders that are not
classes, plus a file that is not an image. The segmenter is a small Keras model trained in
the test, with three heads: a mask, a class map and an embedding.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from conftest import REPO
from quant_core.cli import main
from quant_core.compare import Workbench, measure_variants
from quant_core.errors import InputError
from quant_core.fidelity import EmbeddingMetrics, MaskMetrics, OutputFidelity, TensorFidelity
from quant_core.inputs.datasets import Dataset, decode_entries, open_dataset
from quant_core.inputs.images import load_images
from quant_core.inputs.preprocess import to_model_input
from quant_core.layers import layer_errors
from quant_core.modes import Mode
from quant_core.outputs import agreement
from quant_core.recipe import Recipe
from quant_core.reference import float_tflite
from quant_core.request import CompareOptions
from quant_core.results.dataset_compare import DatasetEvaluation, apply_evaluation
from quant_core.results.verdict import Floor, FloorKind, Target
from quant_core.runner import TFLiteRunner
from quant_core.serving.dataset_evaluation import DatasetScorer, evaluate_dataset
from quant_core.serving.executors import LocalExecutor
from quant_core.tasks import Role, Task
from quant_core.tune import TARGET_MODES, tune

SAMPLES = REPO / "sample_models"
LANDMARKER = SAMPLES / "face_landmark.tflite"
FACES = SAMPLES / "face_images"
SEGMENTER = SAMPLES / "selfie_segmentation.tflite"
REL = 1e-6


def _write_copies(originals: list, root, count: int, *, size: int | None = None, seed: int = 0) -> None:
    """`count` altered copies (a small crop and a brightness change) in two folders that are not classes."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        image = Image.open(originals[k % len(originals)]).convert("RGB")
        w, h = image.size
        cut = int(rng.integers(0, max(1, min(w, h) // 24)))
        image = image.crop((cut, cut, w - cut, h - cut))
        image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.85, 1.15)))
        if size:
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        folder = root / ("left" if k % 2 else "right")
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"copy{k:03d}.png")


@pytest.fixture(scope="module")
def face_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces") / "faces"
    _write_copies(sorted(FACES.iterdir()), root, 20)
    (root / "left" / "broken.png").write_bytes(b"not a png")
    return root


@pytest.fixture(scope="module")
def landmarks(tmp_path_factory):
    """The landmarker's float16 and int8 variants, built and measured on the 7 bundled crops: (bench, result)."""
    from quant_core.cache import ArtifactCache

    options = CompareOptions(recipes=(Recipe(Mode.FLOAT16), Recipe(Mode.INT8)), measure_latency=False)
    bench = Workbench.open(LANDMARKER, load_images((FACES,)), options=options,
                           cache=ArtifactCache(tmp_path_factory.mktemp("cache")))
    result = measure_variants(bench, options, on_progress=lambda p: None)
    assert result.task is Task.LANDMARKS and all(v.ok for v in result.variants), [v.error for v in result.variants]
    return bench, result


def _all_at_once(dataset: Dataset, models) -> tuple[np.ndarray, list[tuple[np.ndarray, ...]]]:
    """Which images can be read, and every model's outputs on all of them in one batch."""
    decoded = list(decode_entries(dataset, range(len(dataset))))
    read = np.array([isinstance(d, np.ndarray) for _, d in decoded])
    x = to_model_input([d for _, d in decoded if isinstance(d, np.ndarray)], models.preprocessing)
    return read, [TFLiteRunner(m.tobytes()).predict_all(x) for m in models.models]


def _close(got: float | None, want: float | None) -> bool:
    return (got is None and want is None) or got == pytest.approx(want, rel=REL, abs=1e-12)


def _same_tensor_figures(got: TensorFidelity, want: TensorFidelity) -> None:
    assert got.exact == want.exact and got.nonfinite == want.nonfinite
    for name in ("sqnr_db", "cosine", "max_abs", "rel_rmse"):
        assert _close(getattr(got, name), getattr(want, name)), (name, getattr(got, name), getattr(want, name))


def test_a_landmark_model_is_scored_on_every_image_as_on_all_images_at_once(landmarks, face_set):
    bench, result = landmarks
    models = bench.model_set(result.variants)
    dataset = open_dataset([face_set])
    evaluation = evaluate_dataset(dataset, models, num_classes=bench.source.info.num_classes, shard_size=8)
    assert evaluation.shards == 3 and evaluation.evaluated == 20 and len(evaluation.images) == 21
    assert evaluation.task is Task.LANDMARKS and evaluation.measure == "PCK@5%"
    assert evaluation.labels_source == "not used: the model is not a classifier"  # two folders, no refusal
    read, outputs = _all_at_once(dataset, models)
    specs = models.specs
    assert [s.role for s in specs] == [Role.LANDMARKS, Role.SCORE]
    for k, score in enumerate(evaluation.variants):
        want = [OutputFidelity.of(spec, outputs[0][spec.index], outputs[k][spec.index], input_hw=models.input_hw)
                for spec in specs]
        for got, expected in zip(score.outputs, want):
            _same_tensor_figures(got.whole, expected.whole)
        marks, expected_marks = score.outputs[0].landmarks, want[0].landmarks
        assert _close(marks.pck_5, expected_marks.pck_5) and _close(marks.mean_error, expected_marks.mean_error)
        assert _close(marks.mean_error_share, expected_marks.mean_error_share)
        assert score.top1_agreement == pytest.approx(agreement(Task.LANDMARKS, specs, want), rel=REL)
        per_image = [v for v in score.per_image if v is not None]
        assert np.allclose(per_image, expected_marks.per_image_pck) and score.per_image[read.argmin()] is None
        assert score.accuracy is None and score.top1 == ()
    float32, int8 = evaluation.score("float32"), evaluation.score("int8")
    assert float32.top1_agreement == 1.0 and all(o.whole.exact for o in float32.outputs)
    points, presence = int8.outputs
    assert not points.whole.exact and 25 < points.whole.sqnr_db < 80  # int8 moves the points, a little
    assert 0 < points.landmarks.mean_error < 9.6 and 0.9 <= int8.top1_agreement <= 1.0
    assert presence.whole.sqnr_db < points.whole.sqnr_db  # the presence logit suffers most, as on the sample


def test_the_numbers_do_not_depend_on_how_the_set_is_cut_into_shards(landmarks, face_set):
    bench, result = landmarks
    models = bench.model_set(result.variants)
    dataset = open_dataset([face_set])
    cuts = [evaluate_dataset(dataset, models, num_classes=0, shard_size=size) for size in (3, 8, 64)]
    assert [c.shards for c in cuts] == [7, 3, 1]
    for other in cuts[1:]:
        assert other.variants == cuts[0].variants  # every figure, exactly: sums are taken over images, not shards


def test_the_comparison_takes_the_whole_sets_figures_and_keeps_its_own_detail(landmarks, face_set):
    bench, result = landmarks
    evaluation = evaluate_dataset(open_dataset([face_set]), bench.model_set(result.variants), num_classes=0)
    folded = apply_evaluation(result, evaluation)
    assert folded.scored_images == 20
    sample, whole, score = result.variant("int8"), folded.variant("int8"), evaluation.score("int8")
    assert whole.top1_agreement == score.top1_agreement and whole.top5_agreement is None
    for mine, on_set, own in zip(whole.outputs, score.outputs, sample.outputs):
        assert mine.whole == on_set.whole and mine.whole != own.whole  # 20 images, not the 7 of the sample
        assert mine.channels == own.channels and mine.worst_channel == own.worst_channel  # per channel: the sample's
    marks = whole.outputs[0].landmarks
    assert marks.pck_5 == score.outputs[0].landmarks.pck_5 and marks.mean_error == score.outputs[0].landmarks.mean_error
    assert marks.per_image_pck == sample.outputs[0].landmarks.per_image_pck and len(marks.per_image_pck) == 7
    assert marks.per_point_error == sample.outputs[0].landmarks.per_point_error
    data = json.loads(json.dumps(evaluation.to_dict()))
    assert data["task"] == "landmarks" and data["measure"] == "PCK@5%" and data["evaluated"] == 20
    assert DatasetEvaluation.from_dict(data) == evaluation


def test_cli_compares_a_landmark_model_on_a_whole_folder(face_set, tmp_path, capfd):
    report = tmp_path / "report.json"
    code = main(["compare", str(LANDMARKER), "--images", str(face_set), "--sample", "7", "--modes", "float32,int8",
                 "--no-latency", "--cache-dir", str(tmp_path / "cache"), "--report-json", str(report)])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert "whole set: 20 of 21 images, 1 skipped" in out and "skipped faces/left/broken.png" in err
    data = json.loads(report.read_text())
    evaluation = data["evaluation"]
    assert evaluation["task"] == "landmarks" and [v["name"] for v in evaluation["variants"]] == ["float32", "int8"]
    int8 = next(v for v in data["variants"] if v["name"] == "int8")
    assert int8["top1_agreement"] == pytest.approx(evaluation["variants"][1]["top1_agreement"], abs=1e-4)


def test_a_search_on_a_landmark_model_climbs_its_pck_judged_on_the_whole_set(landmarks, face_set):
    bench, _ = landmarks
    scorer = DatasetScorer(bench, open_dataset([face_set]), LocalExecutor())
    found = tune(bench, Floor(FloorKind.AGREEMENT, 0.99), max_steps=1, scorer=scorer)
    (step,) = found.steps
    assert found.measure == step.measure == "PCK@5%" and found.to_dict()["steps"][0]["measure"] == "PCK@5%"
    assert step.fidelity_text == f"PCK@5% {step.variant.top1_agreement:.1%}"
    assert step.variant.top1_agreement == scorer.passes[-1].score(step.name).top1_agreement  # the whole set's
    assert step.within_budget and found.met and found.best is step


def test_a_search_whose_layers_cannot_be_compared_keeps_the_modes_it_tried_and_says_why(landmarks, monkeypatch):
    bench, _ = landmarks

    def refused(recipe, *, name=None):
        raise InputError("per-layer error runs LiteRT's builtin kernels, and they lack the custom op X")

    def strict(variants):  # as if every quantized variant missed the budget: the search goes on to float layers
        return tuple(v if v.mode is Mode.FLOAT32 else replace(v, top1_agreement=0.5) for v in variants)

    monkeypatch.setattr(bench, "layer_report", refused)
    found = tune(bench, Floor(FloorKind.AGREEMENT, 0.99), max_steps=12, scorer=strict)
    assert [s.recipe.mode for s in found.steps] == list(TARGET_MODES[Target.CPU])  # every mode, no float layer
    assert not found.met and found.note == "no layer of int8 was kept in float: per-layer error runs LiteRT's " \
        "builtin kernels, and they lack the custom op X"
    assert found.to_dict()["note"] == found.note


# ----------------------------------------------------------------------------------------------- segmentation

SIDE = 24


def _segmentation_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB images with a bright square on noise, and the square's mask."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 80, size=(n, SIDE, SIDE, 3)).astype(np.uint8)
    masks = np.zeros((n, SIDE, SIDE), np.float32)
    for k in range(n):
        top, left, side = (int(v) for v in rng.integers(0, SIDE // 2, size=3) + np.array([0, 0, 6]))
        images[k, top:top + side, left:left + side, k % 3] = rng.integers(150, 255)
        masks[k, top:top + side, left:left + side] = 1.0
    return images, masks


def _segmenter():
    """A conv net trained briefly: a sigmoid person-like mask, a 3-class map (which channel is bright) and an
    L2-normalised 16-value embedding."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu")(x)
    mask = keras.layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
    classes = keras.layers.Conv2D(3, 1, activation="softmax", name="classes")(x)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    embedding = keras.layers.UnitNormalization(name="embedding")(keras.layers.Dense(16)(pooled))
    model = keras.Model(inputs, [mask, classes, embedding])
    images, masks = _segmentation_images(160, seed=1)
    which = (masks[..., None] * (np.arange(3) == (np.arange(160) % 3)[:, None, None, None])).argmax(-1)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=["binary_crossentropy", "sparse_categorical_crossentropy", "mse"])
    model.fit(images.astype("float32"), [masks[..., None], which, np.zeros((160, 16), "float32")],
              epochs=6, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def segmenter_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmenter")
    _segmenter().save(root / "segmenter.keras")
    for name, (count, seed) in {"sample": (12, 2), "set": (23, 3)}.items():
        images, _ = _segmentation_images(count, seed)
        for k, image in enumerate(images):  # in folders "0" and "1": not classes of a model without any
            (root / name / f"{k % 2}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / name / f"{k % 2}" / f"img{k:03d}.png")
    return root


def test_a_segmenter_with_three_heads_is_scored_on_every_image_as_on_all_at_once(segmenter_files):
    from quant_core.cache import ArtifactCache

    options = CompareOptions(recipes=(Recipe(Mode.INT8_FLOAT_IO),), measure_latency=False)  # SQUARE: no int8 kernel
    bench = Workbench.open(segmenter_files / "segmenter.keras", load_images((segmenter_files / "sample",)),
                           options=options, cache=ArtifactCache(segmenter_files / "cache"))
    result = measure_variants(bench, options, on_progress=lambda p: None)
    variant = result.variant("int8_float_io")
    assert result.task is Task.SEGMENTATION and variant.ok, variant.error
    models = bench.model_set(result.variants)
    roles = {s.role: s.index for s in models.specs}
    assert set(roles) == {Role.MASK, Role.CLASS_MAP, Role.EMBEDDING}
    dataset = open_dataset([segmenter_files / "set"])
    evaluation = evaluate_dataset(dataset, models, num_classes=bench.source.info.num_classes, shard_size=5)
    assert evaluation.shards == 5 and evaluation.evaluated == 23 and evaluation.measure == "mask IoU"
    _, outputs = _all_at_once(dataset, models)
    ref, got = outputs
    spec = {s.role: s for s in models.specs}
    score = evaluation.score("int8_float_io")
    for s in models.specs:
        _same_tensor_figures(score.outputs[s.index].whole, TensorFidelity.of(ref[s.index], got[s.index]))
    mask = MaskMetrics.of(ref[roles[Role.MASK]], got[roles[Role.MASK]], threshold=spec[Role.MASK].mask_threshold)
    found = score.outputs[roles[Role.MASK]].mask
    assert found.iou == pytest.approx(mask.iou, rel=REL)
    assert found.pixel_agreement == pytest.approx(mask.pixel_agreement, rel=REL)
    assert 0.5 < found.iou < 1.0  # int8 moves some of the mask's edge, not all of it
    class_map = MaskMetrics.of(ref[roles[Role.CLASS_MAP]], got[roles[Role.CLASS_MAP]])
    pooled = score.outputs[roles[Role.CLASS_MAP]].mask
    assert pooled.class_iou == pytest.approx(class_map.class_iou) and pooled.iou == pytest.approx(class_map.iou)
    vectors = EmbeddingMetrics.of(ref[roles[Role.EMBEDDING]], got[roles[Role.EMBEDDING]])
    embedding = score.outputs[roles[Role.EMBEDDING]].embedding
    assert embedding.mean_cosine == pytest.approx(vectors.mean_cosine, rel=REL) and embedding.nn_agreement is None
    main = min(roles[Role.MASK], roles[Role.CLASS_MAP])  # the first segmentation output decides the task
    assert score.top1_agreement == pytest.approx(
        mask.iou if main == roles[Role.MASK] else class_map.iou, rel=REL)
    assert list(score.per_image) == pytest.approx(
        list((mask if main == roles[Role.MASK] else class_map).per_image_iou))


# ----------------------------------------------------------------------------------------------- layers


def test_the_layer_report_of_a_two_output_model_follows_the_output_asked_for(landmarks):
    bench, _ = landmarks
    float_model, quantized = float_tflite(bench.source, bench.cache), bench.build(Recipe(Mode.INT8)).model
    first = layer_errors(float_model, quantized, bench.x, variant="int8")
    second = layer_errors(float_model, quantized, bench.x, variant="int8", output=1)
    assert [o.name for o in first.outputs] == ["conv2d_21", "conv2d_31"] and first.output_name == "conv2d_21"
    assert second.output_name == "conv2d_31" and first.layers == second.layers
    errors = dict(first.output_errors())
    for report in (first, second):
        layer = report.layers[report.end]
        assert report.output_error == errors[report.output_name] == layer.relative_error
        assert report.path()[-1] is layer  # the path ends at the followed output
        ledger = report.ledger()
        assert ledger.start + ledger.added - ledger.removed == pytest.approx(ledger.output, abs=1e-12)
    assert first.end != second.end and errors["conv2d_31"] > errors["conv2d_21"] > 0


def test_the_layer_report_refuses_a_model_with_a_custom_op_in_one_line():
    model = SEGMENTER.read_bytes()
    x = np.random.default_rng(0).uniform(0, 1, size=(2, 256, 256, 3)).astype(np.float32)
    with pytest.raises(InputError) as refused:
        layer_errors(model, model, x, variant="float16")
    message = str(refused.value)
    assert "\n" not in message and "custom op Convolution2DTransposeBias of this model" in message
    assert "cannot be compared one by one" in message
