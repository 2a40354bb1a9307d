"""Full dataset offers the sets whose class folders are the model's classes first, refuses a set whose folders are
none of them before any work (the command line's rule and words), and calls out a float32 accuracy far below the
comparison's own instead of showing a plain 0 %."""

from __future__ import annotations

import shutil

import pytest
from streamlit.testing.v1 import AppTest

from augmented import write_augmented
from conftest import REPO
from quant_core.cli import main
from quant_core.inputs.datasets import class_fit, open_dataset
from quant_core.results.dataset_compare import DOUBT_POINTS, labels_in_doubt
from test_layers_app import APP, ok  # the same app under AppTest, and its check for errors

SAMPLES = REPO / "sample_models"
DIGIT_NAMES = tuple((SAMPLES / "digits_labels.txt").read_text().split())  # zero, one, ... nine


def _run(at: AppTest, sample: str) -> AppTest:
    at.query_params.update({"sample": sample, "modes": "float32"})
    at.run()
    next(b for b in at.button if b.label == "Run the full comparison").click().run()
    ok(at)
    at.switch_page("pages/evaluate.py").run()
    return ok(at)


def _evaluate(at: AppTest, label: str) -> AppTest:
    """Picks the dataset shown as `label` and evaluates it."""
    box = at.selectbox(key="w.evaluate_dataset")
    box.select_index(box.options.index(label)).run()
    next(b for b in at.button if b.label.startswith("Evaluate on")).click().run()
    return at


def test_the_imagenet_sample_is_offered_its_own_photos_and_the_digits_get_a_warning(monkeypatch):
    """The walk of the report: ImageNet sample, Full dataset with the bundled folders. Its photos come first and
    score what Compare measured; the digits (folders 0-9, read as ImageNet classes 0-9) score ~0 % and say why."""
    monkeypatch.delenv("QW_DATASETS_DIR", raising=False)
    monkeypatch.delenv("QW_EXECUTOR", raising=False)
    at = _run(AppTest.from_file(APP, default_timeout=900), "mobilenet_v2_imagenet")
    box = at.selectbox(key="w.evaluate_dataset")
    assert box.options == ["imagenet_images (22 images, 21 of the model's classes)",
                           "digits_images (120 images, 10 folders read as class indices)",
                           "face_images (7 images, unlabelled: agreement only)",  # the landmark sample's crops
                           "people_images (7 images, unlabelled: agreement only)",  # the segmentation sample's
                           "shapes_images (24 images, unlabelled: agreement only)"]  # the shapes detector's
    assert box.value.dataset.path.endswith("imagenet_images")  # preselected: the set that fits
    next(b for b in at.button if b.label == "Evaluate on 22 images").click().run()
    ok(at)
    assert not at.warning  # the comparison's own photos: float32 scores what Compare measured
    table = at.dataframe[0].value.set_index("variant")
    assert table.loc["float32", "accuracy"] == table.loc["float32", "accuracy on 22"] == "90.91%"
    _evaluate(at, "digits_images (120 images, 10 folders read as class indices)")
    assert not at.error and not at.exception
    evaluation = at.session_state["qw.evaluation"][1]
    float32 = evaluation.score("float32").accuracy
    assert float32 < 0.05  # digits read as tench, goldfish, ...
    assert len(at.warning) == 1
    assert f"float32 itself scores {float32:.2%} accuracy on this set, against 90.91% on the comparison's 22 images" \
        in at.warning[0].value and "say nothing about quantization" in at.warning[0].value


@pytest.fixture()
def datasets(tmp_path, monkeypatch):
    """Five sets for the digits model: by class name, by index, by index but mislabelled, unlabelled, and photos
    whose folders are none of its classes."""
    root = tmp_path / "datasets"
    by_index = write_augmented(SAMPLES / "digits_images", root / "b_by_index", 30, seed=4, flip=False)
    shutil.copytree(by_index, root / "a_by_name")
    for k, name in enumerate(DIGIT_NAMES):
        (root / "a_by_name" / str(k)).rename(root / "a_by_name" / name)
    shutil.copytree(by_index, root / "c_shifted")  # each digit's images in the next digit's folder
    for k in range(10):
        (root / "c_shifted" / str(k)).rename(root / "c_shifted" / f"tmp{(k + 1) % 10}")
    for k in range(10):
        (root / "c_shifted" / f"tmp{k}").rename(root / "c_shifted" / str(k))
    (root / "d_unlabelled").mkdir()
    for k, image in enumerate(sorted((by_index / "3").iterdir())[:3]):
        shutil.copy(image, root / "d_unlabelled" / f"{k}.png")
    shutil.copytree(SAMPLES / "imagenet_images", root / "0_photos")  # first by name, but none of its classes fit
    monkeypatch.setenv("QW_DATASETS_DIR", str(root))
    monkeypatch.delenv("QW_EXECUTOR", raising=False)
    return root


def test_sets_are_offered_best_fitting_first_and_a_set_of_other_classes_is_refused_before_any_work(datasets):
    at = _run(AppTest.from_file(APP, default_timeout=600), "digits_cnn")
    assert at.selectbox(key="w.evaluate_dataset").options == [
        "a_by_name (30 images, 10 of the model's classes)",
        "b_by_index (30 images, 10 folders read as class indices)",
        "c_shifted (30 images, 10 folders read as class indices)",
        "d_unlabelled (3 images, unlabelled: agreement only)",
        "0_photos (22 images, its classes are not the model's)"]
    at.selectbox(key="w.evaluate_dataset").select_index(4).run()
    assert [e.value for e in at.error] == [
        "0_photos: class folder(s) Bullmastiff, Dalmatian, bald eagle, beaker, bottle cap do not match any of the "
        "model's 10 classes; name folders after the labels file's names or by class index."]
    evaluate = next(b for b in at.button if b.label == "Evaluate on 22 images")
    assert evaluate.disabled
    assert "qw.evaluation" not in at.session_state  # nothing ran
    _evaluate(at, "c_shifted (30 images, 10 folders read as class indices)")  # fits by index, labels wrong
    assert not at.error and not at.exception
    evaluation = at.session_state["qw.evaluation"][1]
    assert evaluation.score("float32").accuracy < 0.2  # a trained digit net, every label off by one
    assert len(at.warning) == 1 and "against 100.00% on the comparison's 120 images" in at.warning[0].value
    ok(_evaluate(at, "a_by_name (30 images, 10 of the model's classes)"))  # the same images, named right
    assert at.session_state["qw.evaluation"][1].score("float32").accuracy > 0.8 and not at.warning


def test_the_refusal_is_the_command_lines(datasets, capfd):
    """The page's rule and words are those `compare --images` refuses a dataset with (exit 2, before any work)."""
    code = main(["compare", str(SAMPLES / "digits_cnn.keras"), "--labels", str(SAMPLES / "digits_labels.txt"),
                 "--images", str(datasets / "0_photos"), "--executor", "local", "--no-latency",
                 "--cache-dir", str(datasets.parent / "cache")])
    _, err = capfd.readouterr()
    fit = class_fit(open_dataset([datasets / "0_photos"]).classes, num_classes=10, class_names=DIGIT_NAMES)
    assert code == 2 and err.strip() == f"error: {fit.refusal}"


def test_class_fit_counts_names_and_indices():
    assert class_fit(["cat", "dog", None], num_classes=3, class_names=["cat", "dog", "eel"]).summary == \
        "2 of the model's classes"
    by_index = class_fit(["0", "2"], num_classes=3, class_names=["cat", "dog", "eel"])
    assert (by_index.named, by_index.indexed, by_index.fits) == (0, 2, True)
    mixed = class_fit(["cat", "1"], num_classes=3, class_names=["cat", "dog", "eel"])
    assert mixed.summary == "2 class folders, folder names matched to the labels file"
    assert class_fit([], num_classes=3).summary == "unlabelled: agreement only"
    partly = class_fit(["cat", "fox"], num_classes=3, class_names=["cat", "dog", "eel"])
    assert not partly.fits and "fox" in str(partly.refusal) and "cat" not in str(partly.refusal)
    assert class_fit(["3"], num_classes=3, class_names=["cat", "dog", "eel"]).refusal is not None  # no class 3
    ranked = sorted([partly, by_index, class_fit([], num_classes=3), mixed], key=lambda f: f.rank)
    assert ranked == [mixed, by_index, class_fit([], num_classes=3), partly]


@pytest.mark.parametrize(("own", "dataset", "images", "doubt"), [
    (0.909, 0.719, 22, False),  # the ImageNet photos against the published validation figure: 19 points, expected
    (0.909, 0.0, 22, True),  # the digits read as ImageNet classes
    (1.0, 1.0 - DOUBT_POINTS - 0.01, 120, True),
    (0.8, 0.5, 10, False),  # 30 points, but 10 images: within 3 standard errors (38 points)
    (None, 0.1, 0, True),  # no labels on the comparison's images: 10 classes, at chance
    (None, 0.6, 0, False),
])
def test_labels_in_doubt(own, dataset, images, doubt):
    assert labels_in_doubt(own=own, dataset=dataset, images=images, chance=0.1) is doubt
